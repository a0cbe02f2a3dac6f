"""Module-specific checks for SE, ECA, CBAM, CA, ELA, CRA and GC against the reference numbers in
/work/shared/reference/attention_modules.md (parameter counts, ECA's kernel formula, init-time
behaviour, impossible configurations) and against hand computations on small inputs."""

from __future__ import annotations

import math

import pytest
import torch

from nas_attn.errors import ConfigError
from nas_attn.modules import create_module, get_module
from nas_attn.modules._common import eca_kernel_size, make_divisible, reduced_channels


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ---------------------------------------------------------------- reference parameter counts


@pytest.mark.parametrize(
    ("name", "channels", "hp", "expected"),
    [
        ("se", 256, {}, 8_464),
        ("cbam", 256, {}, 8_564),
        ("ca", 64, {}, 1_688),
        ("ca", 256, {}, 6_680),
        ("cra", 64, {}, 50 * 64),
        ("cra", 256, {}, 50 * 256),
        ("cra", 64, {"pool_size": 4}, 17 * 64),
    ],
)
def test_reference_param_counts(name: str, channels: int, hp: dict, expected: int) -> None:
    assert _count(create_module(name, channels, **hp)) == expected
    assert get_module(name).params(channels, **get_module(name).validate(hp, name)) == expected


@pytest.mark.parametrize(("version", "per_c"), [("T", 7), ("B", 9), ("S", 42), ("L", 58)])
@pytest.mark.parametrize("channels", [64, 128, 256])
def test_ela_param_counts(version: str, per_c: int, channels: int) -> None:
    module = create_module("ela", channels, version=version)
    assert _count(module) == per_c * channels


@pytest.mark.parametrize(
    ("channels", "rd_ratio", "planes"), [(256, 1 / 16, 16), (64, 1 / 4, 16), (96, 1 / 8, 12)]
)
@pytest.mark.parametrize("fusion", ["channel_add", "channel_mul"])
def test_gc_param_count(channels: int, rd_ratio: float, planes: int, fusion: str) -> None:
    module = create_module("gc", channels, rd_ratio=rd_ratio, fusion=fusion)
    expected = 2 * channels * planes + 3 * planes + 2 * channels + 1
    assert _count(module) == expected
    assert module.transform[0].out_channels == planes


def test_gc_refuses_an_empty_bottleneck() -> None:
    with pytest.raises(ConfigError, match=r"int\(8 \* 0.0625\) = 0"):
        create_module("gc", 8)


# ---------------------------------------------------------------- SE hidden width


def test_se_hidden_width_is_the_papers_c_over_r_and_timm_rounding_is_opt_in() -> None:
    assert create_module("se", 256).fc1.out_channels == 16
    assert create_module("se", 24).fc1.out_channels == 1  # 24 // 16, at least 1
    assert create_module("se", 64, rd_ratio=0.25).fc1.out_channels == 16
    # rd_divisor=8: timm's SEModule rounding (nearest multiple, at least 8, round_limit=0)
    assert create_module("se", 64, rd_divisor=8).fc1.out_channels == 8
    assert reduced_channels(180, 1 / 16, 8) == 8  # 11.25 -> 8, not bumped to 16
    assert reduced_channels(200, 1 / 16, 8) == 16  # 12.5 -> 16
    # float error in C * r does not lose a channel
    assert make_divisible(100 * 0.29) == 29
    assert make_divisible(11.25, 8) == 16  # the generic rule keeps timm's 90% bump


# ---------------------------------------------------------------- ECA


@pytest.mark.parametrize(
    ("channels", "k"),
    [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_eca_kernel_formula(channels: int, k: int) -> None:
    assert eca_kernel_size(channels) == k
    module = create_module("eca", channels)
    assert module.conv.kernel_size == (k,)
    assert _count(module) == k


def test_eca_kernel_is_settable_per_module() -> None:
    # the released ECA-ResNet-50 used k = 3, 5, 5, 7 for its four stages
    for channels, k in zip((256, 512, 1024, 2048), (3, 5, 5, 7), strict=True):
        module = create_module("eca", channels, kernel_size=k)
        assert module.conv.kernel_size == (k,)
        assert _count(module) == k
    with pytest.raises(ConfigError, match=r"eca\.kernel_size"):
        create_module("eca", 64, kernel_size=4)


def test_eca_output_matches_a_hand_computation() -> None:
    module = create_module("eca", 5, kernel_size=3)
    w = [0.5, -1.0, 2.0]
    with torch.no_grad():
        module.conv.weight.copy_(torch.tensor(w).view(1, 1, 3))
    x = torch.arange(5 * 2 * 2, dtype=torch.float32).view(1, 5, 2, 2) / 10 - 0.8
    means = [float(x[0, c].mean()) for c in range(5)]
    out = module(x)
    for c in range(5):
        left = means[c - 1] if c > 0 else 0.0  # zero padding at both ends
        right = means[c + 1] if c < 4 else 0.0
        gate = _sigmoid(w[0] * left + w[1] * means[c] + w[2] * right)
        torch.testing.assert_close(out[0, c], x[0, c] * gate)


# ---------------------------------------------------------------- CBAM


def test_cbam_spatial_gate_is_one_half_at_init() -> None:
    module = create_module("cbam", 32)
    x = torch.randn(2, 32, 6, 5)
    for mode in (True, False):
        module.train(mode)
        torch.testing.assert_close(module.spatial_gate(x), 0.5 * x)
        torch.testing.assert_close(module(x), 0.5 * module.channel_gate(x))
    assert torch.all(module.channel_gate.fc1.bias == 0)
    assert torch.all(module.channel_gate.fc2.bias == 0)


def test_cbam_spatial_pool_puts_max_first() -> None:
    module = create_module("cbam", 8, kernel_size=3).eval()
    gate = module.spatial_gate
    with torch.no_grad():
        gate.conv.weight.zero_()
        gate.conv.weight[0, 0, 1, 1] = 1.0  # centre tap of input channel 0 only
        gate.bn.weight.fill_(1.0)
    x = torch.randn(1, 8, 4, 4)
    bn_scale = 1 / math.sqrt(1 + gate.bn.eps)  # fresh running stats: mean 0, var 1
    expected = x * torch.sigmoid(x.amax(1, keepdim=True) * bn_scale)
    torch.testing.assert_close(gate(x), expected)


def test_cbam_channel_gate_sums_the_mlp_of_avg_and_max() -> None:
    module = create_module("cbam", 16)
    cg = module.channel_gate
    x = torch.randn(2, 16, 3, 3)

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return cg.fc2(torch.relu(cg.fc1(v)))

    expected = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    torch.testing.assert_close(cg(x), expected)


# ---------------------------------------------------------------- CA


@pytest.mark.parametrize(
    ("channels", "rd_ratio", "mip"),
    [(64, 1 / 32, 8), (256, 1 / 32, 8), (512, 1 / 32, 16), (256, 1 / 16, 16)],
)
def test_ca_mip(channels: int, rd_ratio: float, mip: int) -> None:
    module = create_module("ca", channels, rd_ratio=rd_ratio)
    assert module.conv1.out_channels == mip
    assert _count(module) == 3 * channels * mip + 3 * mip + 2 * channels


def test_ca_gates_follow_their_axis() -> None:
    """With the shared conv an identity-like map and the two output convs picking one hidden
    channel, a_h depends on the row means only and a_w on the column means only."""
    module = create_module("ca", 8, rd_ratio=1 / 32).eval()  # mip = 8 = C
    with torch.no_grad():
        module.conv1.weight.copy_(torch.eye(8).view(8, 8, 1, 1))
        module.conv1.bias.zero_()
        for conv in (module.conv_h, module.conv_w):
            conv.weight.copy_(torch.eye(8).view(8, 8, 1, 1))
            conv.bias.zero_()
    x = torch.randn(1, 8, 5, 3)
    bn = module.bn1
    scale = 1 / math.sqrt(1 + bn.eps)

    def branch(v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.nn.functional.hardswish(v * scale))

    a_h = branch(x.mean(3, keepdim=True))  # (1, 8, 5, 1)
    a_w = branch(x.mean(2, keepdim=True))  # (1, 8, 1, 3)
    torch.testing.assert_close(module(x), x * a_w * a_h)


# ---------------------------------------------------------------- ELA


def test_ela_t_at_144_is_rejected_with_the_reason() -> None:
    entry = get_module("ela")
    reason = entry.reason_invalid(144, version="T")
    assert reason is not None and "32 GroupNorm groups" in reason and "144" in reason
    with pytest.raises(ConfigError, match="32 GroupNorm groups"):
        create_module("ela", 144, version="T")
    for version in ("B", "S", "L"):
        assert entry.reason_invalid(144, version=version) is None
        assert _count(create_module("ela", 144, version=version)) > 0


def test_ela_s_and_l_need_channels_divisible_by_8() -> None:
    reason = get_module("ela").reason_invalid(12, version="S")
    assert reason is not None and "divisible by 8" in reason
    with pytest.raises(ConfigError, match="divisible by 8"):
        create_module("ela", 20, version="L")


def test_ela_variants_are_the_four_versions() -> None:
    variants = get_module("ela").variants
    assert {k: dict(v) for k, v in variants.items()} == {
        "ELA-T": {"version": "T"},
        "ELA-B": {"version": "B"},
        "ELA-S": {"version": "S"},
        "ELA-L": {"version": "L"},
    }


def test_ela_shares_one_conv_and_norm_between_directions() -> None:
    module = create_module("ela", 32, version="T")
    x = torch.randn(2, 32, 4, 6)
    a_h = torch.sigmoid(module.gn(module.conv(x.mean(3))))
    a_w = torch.sigmoid(module.gn(module.conv(x.mean(2))))
    torch.testing.assert_close(module(x), x * a_h[..., None] * a_w[:, :, None, :])


# ---------------------------------------------------------------- CRA


def test_cra_with_uniform_weights_is_a_global_average_gate() -> None:
    module = create_module("cra", 4, pool_size=3)
    with torch.no_grad():
        module.conv.weight.fill_(1 / 9)
        module.conv.bias.zero_()
    x = torch.randn(2, 4, 6, 6)  # 6x6 pooled to 3x3 in equal 2x2 cells
    torch.testing.assert_close(module(x), x * torch.sigmoid(x.mean((2, 3), keepdim=True)))


# ---------------------------------------------------------------- GC


def test_gc_add_is_the_identity_at_init_and_mul_halves() -> None:
    x = torch.randn(2, 32, 5, 4)
    add = create_module("gc", 32)
    torch.testing.assert_close(add(x), x)
    mul = create_module("gc", 32, fusion="channel_mul")
    torch.testing.assert_close(mul(x), 0.5 * x)


def test_gc_context_is_the_softmax_weighted_sum() -> None:
    module = create_module("gc", 16, rd_ratio=1 / 4)
    with torch.no_grad():
        for p in module.transform.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(1, 16, 3, 2)
    logits = module.conv_mask(x).flatten(1)  # (1, 6)
    weights = torch.softmax(logits, dim=1)
    context = (x.flatten(2) * weights[:, None, :]).sum(2)[:, :, None, None]
    torch.testing.assert_close(module(x), x + module.transform(context))
