"""Second half of the zoo: CAT, SEM, DANet PAM/CAM, Non-local, the RFAConv family, SDA.

Parameter counts are checked against the reference formulas (written out here independently of
the modules' own ``params``), and behaviour against properties that hold without the authors'
code: identity at init, constant gates, entropy of a constant map, output shapes, softmax sums.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nas_attn.errors import ConfigError
from nas_attn.modules import create_module, get_module
from nas_attn.modules.cat import entropy_pool


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def eca_k(c: int) -> int:
    t = int(abs(math.log2(c) + 1) / 2)
    return t if t % 2 else t + 1


def assert_count(name: str, *args, expected: int, **hp) -> None:
    m = create_module(name, *args, **hp)
    assert n_params(m) == expected
    assert get_module(name).params(*args, **get_module(name).validate(hp, name)) == expected


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("c", [8, 64, 256])
def test_pam_params(c):
    assert_count("pam", c, expected=int(1.25 * c * c + 1.25 * c + 1))


@pytest.mark.parametrize("c", [3, 64, 512])
def test_cam_params(c):
    assert_count("cam", c, expected=1)


@pytest.mark.parametrize("c", [2, 64, 256])
@pytest.mark.parametrize("sub_sample", [True, False])
def test_nonlocal_params(c, sub_sample):
    assert_count("nonlocal", c, expected=int(2 * c * c + 4.5 * c), sub_sample=sub_sample)


@pytest.mark.parametrize("c", [64, 256, 512, 2048])
def test_sem_params_default_operators(c):
    h = round(c / 16)
    assert_count("sem", c, expected=2 * c * h + 6 * c + h + eca_k(c) + 3)


def test_sem_params_c64_is_906():
    assert_count("sem", 64, expected=906)


@pytest.mark.parametrize("c", [32, 256])
def test_sem_params_any_subset(c):
    h = round(c / 16)
    mlp = 2 * c * h + h + c
    per_op = {"se": mlp, "eca": eca_k(c), "affine": 2 * c, "cbam": mlp, "cra": 49 * c + c}
    for ops in (["se"], ["eca"], ["affine", "cra"], ["se", "cbam"], list(per_op)):
        n = len(ops)
        assert_count("sem", c, operators=ops, expected=c * n + n + sum(per_op[o] for o in ops))


@pytest.mark.parametrize("c", [64, 256, 2048])
@pytest.mark.parametrize("n", [2, 3, 6])
def test_sda_params(c, n):
    d = max(c // 16, 64)
    assert_count("sda", c, n, expected=(n + 1) * c * d + 2 * d + n * c)


def test_sda_params_hparams():
    c, n = 256, 3
    d = max(c // 4, 8)
    assert_count("sda", c, n, rd_ratio=0.25, min_dim=8, expected=(n + 1) * c * d + 2 * d + n * c)


@pytest.mark.parametrize(("c", "o", "k", "s"), [(8, 16, 3, 1), (16, 32, 3, 2), (4, 6, 5, 1)])
def test_rfaconv_params(c, o, k, s):
    expected = c * k**2 + c * k**4 + 2 * c * k**2 + o * c * k**2 + o
    assert_count("rfaconv", c, o, k, s, expected=expected)
    if k == 3:
        assert expected == 108 * c + 9 * c * o + o


@pytest.mark.parametrize(("c", "o", "k"), [(8, 16, 3), (64, 64, 3), (512, 512, 3), (16, 8, 5)])
def test_rfcaconv_params(c, o, k):
    mip = max(8, c // 32)
    ca = c * mip + mip + 2 * mip + 2 * (mip * c + c)
    expected = c * k**4 + 2 * c * k**2 + ca + o * c * k**2 + o
    assert_count("rfcaconv", c, o, k, 1, expected=expected)


def test_rfcaconv_reduction_hparam():
    c, o, k = 256, 32, 3
    mip = max(8, c // 8)
    ca = c * mip + mip + 2 * mip + 2 * (mip * c + c)
    assert_count("rfcaconv", c, o, k, 1, rd_ratio=1 / 8,
                 expected=c * k**4 + 2 * c * k**2 + ca + o * c * k**2 + o)


@pytest.mark.parametrize(("c", "o", "k", "rd"), [(8, 16, 3, 16), (64, 64, 3, 16), (32, 8, 3, 4)])
def test_rfcbamconv_params(c, o, k, rd):
    expected = c * k**4 + 2 * c * k**2 + 2 * c * rd + 2 * 9 + o * c * k**2 + o
    assert_count("rfcbamconv", c, o, k, 1, rd_channels=rd, expected=expected)


@pytest.mark.parametrize("c", [16, 64, 256])
@pytest.mark.parametrize(
    ("pooling", "fusion"),
    [(["avg", "max", "entropy"], "parallel"), (["entropy"], "parallel"),
     (["avg"], "sequential"), (["max", "entropy"], "sequential")],
)
def test_cat_params(c, pooling, fusion):
    h = c // 16
    n = len(pooling)
    expected = (2 * c * h + h + c) + n + (49 * n + 2) + (2 if fusion == "parallel" else 0)
    assert_count("cat", c, pooling=pooling, fusion=fusion, expected=expected)


# --------------------------------------------------------------------------- checks


def test_impossible_configurations_are_refused():
    assert get_module("pam").reason_invalid(12) is not None
    assert get_module("pam").reason_invalid(16) is None
    assert get_module("nonlocal").reason_invalid(7) is not None
    assert get_module("sda").reason_invalid(64, 1) is not None
    assert get_module("sda").reason_invalid(64, 2) is None
    with pytest.raises(ConfigError, match="divisible by 8"):
        create_module("pam", 12)
    with pytest.raises(ConfigError, match="even"):
        create_module("nonlocal", 7)
    with pytest.raises(ConfigError, match="at least 2"):
        create_module("sda", 64, 1)


def test_bad_hparams_name_the_field():
    with pytest.raises(ConfigError, match=r"sem\.operators"):
        create_module("sem", 64, operators=["se", "transformer"])
    with pytest.raises(ConfigError, match=r"cat\.pooling"):
        create_module("cat", 64, pooling=[])
    with pytest.raises(ConfigError, match=r"cat\.fusion"):
        create_module("cat", 64, fusion="series")


# --------------------------------------------------------------------------- DANet


@pytest.mark.parametrize("name", ["pam", "cam", "nonlocal"])
def test_identity_at_init(name):
    m = create_module(name, 16)
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(m(x), x)
    m.eval()
    torch.testing.assert_close(m(x), x)


def test_pam_matches_formula_with_gamma_one():
    m = create_module("pam", 16).eval()
    with torch.no_grad():
        m.gamma.fill_(1.0)
    x = torch.randn(2, 16, 3, 4)
    q, k, v = (conv(x).flatten(2) for conv in (m.query, m.key, m.value))  # (N, ch, HW)
    attn = torch.einsum("nci,ncj->nij", q, k).softmax(dim=-1)  # over key positions j
    expected = torch.einsum("ncj,nij->nci", v, attn).view_as(x) + x
    torch.testing.assert_close(m(x), expected)


def test_cam_matches_formula_with_gamma_one():
    m = create_module("cam", 6).eval()
    with torch.no_grad():
        m.gamma.fill_(1.0)
    x = torch.randn(2, 6, 3, 4) * 0.3
    f = x.flatten(2)
    energy = torch.einsum("nci,ndi->ncd", f, f)
    attn = (energy.max(dim=-1, keepdim=True).values - energy).softmax(dim=-1)
    expected = torch.einsum("ncd,ndi->nci", attn, f).view_as(x) + x
    torch.testing.assert_close(m(x), expected)


def test_gradients_reach_every_parameter_once_gamma_is_nonzero():
    for name in ("pam", "cam"):
        m = create_module(name, 16)
        with torch.no_grad():
            m.gamma.fill_(0.5)
        m(torch.randn(2, 16, 4, 4)).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


# --------------------------------------------------------------------------- Non-local


def test_nonlocal_matches_formula_with_unit_bn():
    c, d = 8, 4
    m = create_module("nonlocal", c).eval()
    with torch.no_grad():
        m.bn.weight.fill_(1.0)
    x = torch.randn(2, c, 5, 6)
    pooled = F.max_pool2d(x, 2, 2, ceil_mode=True)  # 3 x 3 keys from a 5 x 6 map
    theta = m.theta(x).flatten(2)
    phi, g = m.phi(pooled).flatten(2), m.g(pooled).flatten(2)
    f = (torch.einsum("ndi,ndj->nij", theta, phi) / math.sqrt(d)).softmax(dim=-1)
    y = torch.einsum("ndj,nij->ndi", g, f).view(2, d, 5, 6)
    torch.testing.assert_close(m(x), m.bn(m.out(y)) + x)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8)])
@pytest.mark.parametrize("sub_sample", [True, False])
def test_nonlocal_any_size(size, sub_sample):
    m = create_module("nonlocal", 4, sub_sample=sub_sample)
    with torch.no_grad():
        m.bn.weight.fill_(1.0)
    x = torch.randn(2, 4, *size)
    assert m(x).shape == x.shape


def test_nonlocal_init_is_the_authors():
    m = create_module("nonlocal", 64)
    assert torch.all(m.bn.weight == 0)
    for conv in (m.theta, m.phi, m.g, m.out):
        assert torch.all(conv.bias == 0)
        assert 0.005 < conv.weight.std().item() < 0.02


# --------------------------------------------------------------------------- SEM


@pytest.mark.parametrize("ops", [["se", "eca", "affine"], ["eca"], ["se", "cbam", "cra"]])
def test_sem_switches_off_give_constant_half_gates(ops):
    m = create_module("sem", 32, operators=ops)
    with torch.no_grad():
        m.switch.bias.fill_(-1e4)  # sigmoid -> 0: every operator becomes sigmoid(0) = 0.5
    x = torch.randn(2, 32, 5, 5)
    torch.testing.assert_close(m(x), x * 0.5 ** len(ops))


def test_sem_affine_operator_init_and_effect():
    m = create_module("sem", 16, operators=["affine"])
    assert torch.all(m.ops["affine"].weight == 0) and torch.all(m.ops["affine"].bias == -1)
    with torch.no_grad():
        m.switch.weight.zero_()
        m.switch.bias.fill_(1e4)  # switch fully on: gate = sigmoid(0 * u - 1)
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(m(x), x * torch.sigmoid(torch.tensor(-1.0)))


def test_sem_switch_weights_are_independent_sigmoids():
    m = create_module("sem", 16)
    s = m.switch_weights(torch.randn(4, 16, 3, 3))
    assert s.shape == (4, 3) and torch.all((s > 0) & (s < 1))
    assert not torch.allclose(s.sum(dim=1), torch.ones(4))


# --------------------------------------------------------------------------- CAT


def test_gep_of_a_constant_map_is_log_hw():
    x = torch.full((2, 3, 4, 5), 1.7)
    torch.testing.assert_close(entropy_pool(x, (2, 3)), torch.full((2, 3), math.log(20)))
    # a single dominant position: entropy -> 0; huge inputs stay finite
    y = torch.zeros(1, 1, 4, 4)
    y[..., 0, 0] = 1e4
    assert entropy_pool(y, (2, 3)).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(entropy_pool(torch.randn(2, 3, 4, 4) * 1e6, (2, 3))).all()


def test_gep_over_channels_keepdim():
    x = torch.randn(2, 5, 3, 4)
    h = entropy_pool(x, 1, keepdim=True)
    assert h.shape == (2, 1, 3, 4)
    p = x.softmax(dim=1)
    torch.testing.assert_close(h, -(p * p.log()).sum(dim=1, keepdim=True))


@pytest.mark.parametrize("pooling", [["avg"], ["max"], ["entropy"], ["avg", "max", "entropy"]])
@pytest.mark.parametrize("fusion", ["parallel", "sequential"])
def test_cat_builds_runs_and_learns(pooling, fusion):
    # h = 16 hidden units: with C/16 = 2 both ReLUs can be dead for one random input
    m = create_module("cat", 64, pooling=pooling, fusion=fusion, rd_ratio=0.25)
    x = torch.randn(2, 64, 6, 5)
    out = m(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_cat_parallel_is_the_stated_fusion():
    m = create_module("cat", 32, pooling=["avg", "entropy"]).eval()
    x = torch.randn(2, 32, 4, 4)
    a = m.pool_factors
    ch = a[0] * m.mlp(x.mean((2, 3), keepdim=True)) + a[1] * m.mlp(
        entropy_pool(x, (2, 3), keepdim=True)
    )
    sp = m.spatial(torch.cat([x.mean(1, keepdim=True), entropy_pool(x, 1, keepdim=True)], 1))
    expected = x * torch.sigmoid(ch) + x * torch.sigmoid(sp)  # colla-factors start at 1
    torch.testing.assert_close(m(x), expected)


# --------------------------------------------------------------------------- RFAConv family


@pytest.mark.parametrize("name", ["rfaconv", "rfcaconv", "rfcbamconv"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("k", "size"), [(3, (8, 8)), (3, (7, 9)), (5, (5, 6)), (1, (3, 4))])
def test_rf_convs_match_conv2d_shape(name, stride, k, size):
    m = create_module(name, 8, 12, k, stride)
    x = torch.randn(2, 8, *size)
    ref = nn.Conv2d(8, 12, k, stride, k // 2)(x)
    out = m(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()


def test_rfaconv_rearrangement_and_softmax():
    """Rebuild the output by hand: per-patch softmax weights, k x k patches, strided conv."""
    c, o, k = 2, 3, 3
    m = create_module("rfaconv", c, o, k, 1).eval()
    x = torch.randn(1, c, 4, 5)
    h, w = 4, 5
    weight = m.get_weight(x).view(1, c, k * k, h, w).softmax(dim=2)
    assert torch.allclose(weight.sum(dim=2), torch.ones(1, c, h, w))
    feat = m.features(x).view(1, c, k * k, h, w)
    g = torch.zeros(1, c, k * h, k * w)
    for i in range(h):
        for j in range(w):
            for n1 in range(k):
                for n2 in range(k):
                    g[0, :, i * k + n1, j * k + n2] = (feat * weight)[0, :, n1 * k + n2, i, j]
    torch.testing.assert_close(m(x), m.conv(g))


def test_rf_convs_are_reachable_by_kind():
    for name in ("rfaconv", "rfcaconv", "rfcbamconv"):
        assert get_module(name).kind == "conv"


# --------------------------------------------------------------------------- SDA


def test_sda_weights_sum_to_one_across_blocks():
    m = create_module("sda", 16, 3)
    zs = [torch.randn(4, 16, 5, 5) for _ in range(3)]
    a = m.weights(zs)
    assert a.shape == (4, 3, 16, 1, 1)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(4, 16, 1, 1))
    out = m(zs)
    assert out.shape == zs[0].shape and torch.all(out >= 0)


def test_sda_uniform_weights_give_relu_of_mean():
    m = create_module("sda", 16, 4)
    with torch.no_grad():
        for fc in m.expand:
            fc.weight.zero_()
            fc.bias.zero_()
    zs = [torch.randn(2, 16, 3, 3) for _ in range(4)]
    torch.testing.assert_close(m(zs), F.relu(torch.stack(zs).mean(dim=0)))


def test_sda_refuses_a_wrong_number_of_blocks():
    m = create_module("sda", 16, 3)
    with pytest.raises(ValueError, match="3 blocks"):
        m([torch.randn(2, 16, 3, 3)] * 2)
