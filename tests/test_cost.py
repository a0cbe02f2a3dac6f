"""The cost model: exact counts on hand-checkable networks, every zoo op handled, no side effects
on the profiled model, attribution, caching, and the published ResNet multiply-add counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas_attn.backbones import shipped_backbones
from nas_attn.cost import (
    FLOP_HANDLERS,
    ProfileResult,
    UnhandledOpsError,
    clear_cache,
    count_forward,
    per_output_element,
    profile,
    profile_module,
    register_flop_handler,
)
from nas_attn.cost.handlers import SOFTMAX_FLOPS_PER_ELEMENT
from nas_attn.modules import MODULES
from nas_attn.modules.se import SqueezeExcite


def _flops(model: nn.Module, *shape: int) -> ProfileResult:
    return profile(model, shape, strict=True)


# ---------------------------------------------------------------------------------------------
# exact counts, computed by hand


def test_conv_counts_macs_only():
    # out 8 x 8 x 8 = 512 elements, each a dot product of 3 * 3 * 3 = 27 (the bias folds in)
    r = _flops(nn.Conv2d(3, 8, 3, padding=1, bias=True), 3, 8, 8)
    assert r.flops == 512 * 27
    assert r.conv_linear_macs == 512 * 27
    assert r.params == 8 * 27 + 8


def test_grouped_strided_conv():
    # groups=2: each output reads 4 / 2 = 2 channels x 9; stride 2 on 8x8 -> 4x4; 8 x 16 outputs
    r = _flops(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False), 4, 8, 8)
    assert r.flops == 8 * 16 * 2 * 9


def test_linear():
    r = _flops(nn.Sequential(nn.Flatten(), nn.Linear(10, 5)), 10, 1, 1)
    assert r.flops == 50
    assert r.conv_linear_macs == 50
    assert r.by_op == {"aten::addmm": 50}


def test_batch_norm_eval_two_per_element():
    r = _flops(nn.BatchNorm2d(8), 8, 4, 4)
    assert r.flops == 2 * 8 * 4 * 4
    assert r.conv_linear_macs == 0


def test_group_norm_computes_statistics():
    # statistics 5 + affine 2 per element
    r = _flops(nn.GroupNorm(2, 8), 8, 4, 4)
    assert r.flops == 7 * 8 * 16


def test_se_module_c16_on_4x4():
    c, hw = 16, 4 * 4
    hidden = c // 16  # = 1
    expected = (
        c * hw  # mean over H, W: one per input element
        + hidden * c  # fc1 1x1 conv: hidden outputs x c
        + hidden  # ReLU
        + c * hidden  # fc2 1x1 conv
        + c  # sigmoid
        + c * hw  # x * gate
    )
    r = _flops(SqueezeExcite(c), c, 4, 4)
    assert r.flops == expected == 561
    assert r.attention_flops == r.flops  # a bare zoo module is all attention
    assert r.backbone_flops == 0
    assert r.params == MODULES.get("se").params(c) == 2 * c * hidden + hidden + c


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + x)


def test_residual_add_and_relu():
    r = _flops(_Residual(4), 4, 3, 3)
    n = 4 * 9
    assert r.by_op == {"aten::convolution": n * 4, "aten::add": n, "aten::relu": n}
    assert r.flops == 6 * n


def test_pooling_and_softmax():
    # max pool 3x3 stride 2 pad 1: 8x8 -> 4x4, 9 window elements per output
    assert _flops(nn.MaxPool2d(3, 2, 1), 2, 8, 8).flops == 2 * 16 * 9
    # adaptive 5 -> 3 uses windows [0,2) [1,4) [3,5): 2 + 3 + 2 = 7 per axis
    assert _flops(nn.AdaptiveAvgPool2d(3), 2, 5, 5).flops == 2 * 7 * 7
    # global average pooling lowers to mean: one per input element
    assert _flops(nn.AdaptiveAvgPool2d(1), 2, 5, 5).flops == 2 * 25
    assert _flops(nn.Softmax(dim=1), 3, 2, 2).flops == SOFTMAX_FLOPS_PER_ELEMENT * 12


def test_data_movement_is_free():
    class Move(nn.Module):
        def forward(self, x):
            y = torch.cat([x, x], 1).permute(0, 2, 3, 1).reshape(1, -1)
            return torch.nn.functional.pad(y, (1, 1)).split(3, dim=1)[0].contiguous()

    r = _flops(Move(), 2, 3, 3)
    assert r.flops == 0 and r.unhandled == ()


# ---------------------------------------------------------------------------------------------
# every op of the zoo is handled


def _module_cases():
    for name, entry in MODULES.items():
        yield pytest.param(name, {}, id=name)
        for variant, hp in entry.variants.items():
            yield pytest.param(name, dict(hp), id=f"{name}-{variant}")


@pytest.mark.parametrize(("name", "hp"), list(_module_cases()))
def test_no_unhandled_op_in_any_module(name, hp):
    entry = MODULES.get(name)
    c = 64
    r = profile_module(name, c, (8, 8), hp, strict=True)  # raises UnhandledOpsError otherwise
    assert r.unhandled == ()
    assert r.flops > 0
    assert r.attention_flops == r.flops
    args = {"gate": (c,), "conv": (c, c, 3, 1), "fusion": (c, 2)}[entry.kind]
    assert r.params == entry.params(*args, **entry.validate(hp, name))


def test_unhandled_op_reported_then_registered():
    class Erfinv(nn.Module):
        def forward(self, x):
            return torch.erfinv(x)

    assert "aten::erfinv" not in FLOP_HANDLERS
    with pytest.raises(UnhandledOpsError, match="aten::erfinv"):
        profile(Erfinv(), (1, 2, 2), strict=True)
    with pytest.warns(UserWarning, match="aten::erfinv"):
        assert profile(Erfinv(), (1, 2, 2)).unhandled == ("aten::erfinv",)
    try:
        register_flop_handler(torch.ops.aten.erfinv, per_output_element(3))
        assert profile(Erfinv(), (1, 2, 2), strict=True).flops == 12
    finally:
        FLOP_HANDLERS.pop("aten::erfinv")


# ---------------------------------------------------------------------------------------------
# no side effects; attribution


class _Gated(nn.Module):
    """A tiny net with one SE gate, exposing attention_modules() like the backbones."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.se = SqueezeExcite(16)
        self.head = nn.Linear(16, 4)

    def attention_modules(self):
        yield "se", self.se

    def forward(self, x):
        x = self.se(torch.relu(self.bn(self.conv(x))))
        return self.head(x.mean((2, 3)))


def test_profile_model_leaves_bn_stats_and_modes_alone():
    model = _Gated()
    with torch.no_grad():
        model(torch.randn(4, 3, 4, 4))  # give the BN non-trivial statistics
    model.train()
    model.head.eval()  # a mixed state must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    profile(model, (3, 4, 4))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: m.training for n, m in model.named_modules()} == modes


def test_attention_split_sums_to_total():
    model = _Gated()
    r = profile(model, (3, 4, 4), strict=True)
    se_alone = profile(SqueezeExcite(16), (16, 4, 4), strict=True).flops
    assert r.attention_flops == se_alone == r.by_module["se"]
    assert r.attention_flops + r.backbone_flops == r.flops == sum(r.by_op.values())
    assert r.attention_params == MODULES.get("se").params(16)


def test_plain_module_is_all_backbone():
    r = profile(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), (3, 2, 2))
    assert r.attention_flops == 0 and r.backbone_flops == r.flops == 4 * 4 * 3 + 16


def test_count_forward_on_meta_matches_real():
    model = _Gated().eval()
    real = count_forward(model, (torch.zeros(1, 3, 4, 4),), model.attention_modules())
    with torch.device("meta"):
        meta_model = _Gated().eval()
        meta = count_forward(meta_model, (torch.zeros(1, 3, 4, 4),), meta_model.attention_modules())
    assert dict(real.by_op) == dict(meta.by_op)


@pytest.mark.parametrize("training", [False, True])
def test_meta_shortcuts_match_the_meta_kernels(training):
    from nas_attn.cost.counter import META_SHORTCUTS

    with torch.device("meta"):
        bn = nn.BatchNorm2d(8)
        args = (torch.zeros(2, 8, 3, 3), bn.weight, bn.bias, bn.running_mean, bn.running_var,
                training, 0.1, 1e-5)
    for op, shortcut in META_SHORTCUTS.items():
        want, got = op(*args), shortcut(*args)
        assert [(t.shape, t.dtype, t.device) for t in want] == [
            (t.shape, t.dtype, t.device) for t in got]


# ---------------------------------------------------------------------------------------------
# specs: cache, published numbers

def test_spec_cache_hit_returns_equal_result():
    clear_cache()
    spec = {"backbone": "resnet18_cifar", "stages": [{"attention": {"type": "se"}}]}
    first = profile(spec, strict=True)
    first.by_op.clear()  # the caller's copy: must not reach the cache
    again = profile(spec)
    assert again.by_op and again == profile(spec)
    assert again.spec_hash == first.spec_hash and again.flops == first.flops
    assert again.attention_flops > 0
    assert again.attention_flops + again.backbone_flops == again.flops
    # the counts do not depend on how the spec is given (same canonical hash)
    assert profile({**spec, "stages": [{"attention": "se"}]}) == again


def test_register_flop_handler_applies_to_a_cached_spec():
    """A handler registered after a spec was profiled counts on the next call, without
    clear_cache (the cache is keyed on the handler table)."""
    spec = {"backbone": "resnet18_cifar", "stages": [{"attention": {"type": "se"}}]}
    before = profile(spec, strict=True)
    old = FLOP_HANDLERS["aten::sigmoid"]
    sigmoid = before.by_op["aten::sigmoid"]  # SE's gate
    try:
        register_flop_handler(torch.ops.aten.sigmoid, per_output_element(4))  # was 1
        after = profile(spec, strict=True)
        assert sigmoid > 0 and after.by_op["aten::sigmoid"] == 4 * sigmoid
        assert after.flops == before.flops + 3 * sigmoid
    finally:
        register_flop_handler(torch.ops.aten.sigmoid, old)
    assert profile(spec, strict=True) == before


def test_spec_profile_equals_built_model_profile():
    from nas_attn.arch import build_model

    spec = {"backbone": "resnet18_cifar", "stages": [None, {"attention": {"type": "cbam"}}]}
    from_spec = profile(spec, strict=True)
    from_model = profile(build_model(spec), (3, 32, 32), strict=True)
    assert from_spec.flops == from_model.flops
    assert from_spec.attention_flops == from_model.attention_flops
    assert from_spec.params == from_model.params


def test_conv_and_fusion_modules_count_as_attention():
    spec = {"backbone": "resnet18_cifar", "stages": [
        {"conv": "rfaconv"},
        {"fusion": "sda"},
        {"attention": "eca", "position": "identity", "blocks": "last"},
    ]}
    r = profile(spec, strict=True)
    assert set(r.by_module) == {"layer1.0.conv1", "layer1.1.conv1", "layer2.fusion",
                                "layer3.1.attn.identity"}
    assert sum(r.by_module.values()) == r.attention_flops
    assert r.attention_flops + r.backbone_flops == r.flops
    plain = profile({"backbone": "resnet18_cifar"}, strict=True)
    # the replaced 3x3 convs leave the backbone: its share drops below the plain network's
    assert r.backbone_flops < plain.flops < r.flops


@pytest.mark.parametrize(
    ("backbone", "macs"),
    # torchvision's ResNet v1.5 at 224x224, conv + linear multiply-adds (1000 classes); the
    # test file recomputes them from the layer shapes below
    [("resnet50", 4_089_184_256), ("resnet18", 1_814_073_344)],
)
def test_published_resnet_macs(backbone, macs):
    assert _resnet_macs(backbone) == macs
    r = profile({"backbone": backbone, "num_classes": 1000}, (3, 224, 224), strict=True)
    assert r.conv_linear_macs == macs
    assert r.attention_flops == 0


def _resnet_macs(name: str) -> int:
    """Conv + linear multiply-adds of a torchvision ResNet, from its layer shapes."""

    def conv(h: int, cin: int, cout: int, k: int, s: int) -> tuple[int, int]:
        ho = (h + 2 * (k // 2) - k) // s + 1
        return ho, ho * ho * cout * cin * k * k

    bottleneck, layers = {"resnet50": (True, (3, 4, 6, 3)), "resnet18": (False, (2, 2, 2, 2))}[name]
    _, total = conv(224, 3, 64, 7, 2)
    h, inp = 56, 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
        for b in range(n):
            s = 2 if b == 0 and i > 0 else 1
            if bottleneck:
                out = planes * 4
                parts = [conv(h, inp, planes, 1, 1), conv(h, planes, planes, 3, s)]
                h2 = parts[1][0]
                parts.append(conv(h2, planes, out, 1, 1))
            else:
                out = planes
                parts = [conv(h, inp, planes, 3, s)]
                h2 = parts[0][0]
                parts.append(conv(h2, planes, planes, 3, 1))
            if s != 1 or inp != out:
                parts.append(conv(h, inp, out, 1, s))
            total += sum(p[1] for p in parts)
            h, inp = h2, out
    return total + inp * 1000


def test_published_mobilenetv2_macs():
    macs = 300_774_272  # MobileNetV2 1.0 at 224 ("300M" in the paper), from the layer shapes:
    assert _mobilenetv2_macs() == macs
    r = profile({"backbone": "mobilenetv2", "num_classes": 1000}, (3, 224, 224), strict=True)
    assert r.conv_linear_macs == macs


def _mobilenetv2_macs() -> int:
    h, inp = 112, 32
    total = h * h * 32 * 3 * 9  # stem 3x3 stride 2
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # expansion t, channels c, repeats n, stride s
    for t, c, n, s in settings:
        for i in range(n):
            hidden = inp * t
            if t != 1:
                total += h * h * hidden * inp  # 1x1 expand
            ho = (h + 2 - 3) // (s if i == 0 else 1) + 1
            total += ho * ho * hidden * 9 + ho * ho * c * hidden  # depthwise 3x3, 1x1 project
            h, inp = ho, c
    return total + h * h * 1280 * inp + 1280 * 1000  # last 1x1 conv, classifier


@pytest.mark.parametrize("backbone", shipped_backbones())
def test_every_backbone_is_fully_counted(backbone):
    r = profile({"backbone": backbone}, strict=True)
    assert r.flops > r.conv_linear_macs > 0
    assert r.backbone_flops == r.flops


def test_bad_arguments_raise_config_error():
    from nas_attn.errors import ConfigError

    with pytest.raises(ConfigError, match="input_size"):
        profile(nn.ReLU(), (3, 0, 4))
    with pytest.raises(ConfigError, match="batch_size"):
        profile(nn.ReLU(), (3, 4, 4), batch_size=0)
    with pytest.raises(ConfigError, match="spec_or_model"):
        profile(42)


def test_latency_measured_on_cpu():
    model = nn.Conv2d(3, 4, 3)
    r = profile(model, (3, 8, 8), latency=True, batch_size=2, repeats=3, warmup=1)
    assert r.latency_ms is not None and r.latency_ms > 0
    assert r.device == "cpu" and r.batch_size == 2 and r.latency_repeats == 3
    assert model.training
