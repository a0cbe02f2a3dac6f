"""Backbones: exact plain sizes, forward shapes, insertion points that match the layout, conv
replacement, stage fusion, and initialisation that leaves zoo modules alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas_attn.arch import build_model, canonicalize
from nas_attn.backbones import POSITIONS, get_backbone, shipped_backbones
from nas_attn.backbones._net import block_plans, find_zoo_modules
from nas_attn.modules import MODULES, create_module, module_names


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def stages_with(backbone: str, position: str, attention="se", args=None) -> list:
    """A spec's stage list putting ``attention`` at ``position`` in every stage that has it."""
    layout = get_backbone(backbone).layout(
        canonicalize({"backbone": backbone, "backbone_args": args or {}}).backbone_args)
    return [
        {"attention": attention, "position": position}
        if any(position in b.positions for b in info.blocks) else None
        for info in layout
    ]


# ---------------------------------------------------------------------------------------------
# sizes and shapes of the plain networks


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
     ("resnet101", 44_549_160), ("mobilenetv2", 3_504_872),
     ("resnet20", 269_722)],  # He et al.: "0.27M"
)
def test_plain_parameter_counts_match_reference(name, expected):
    classes = 10 if name == "resnet20" else 1000
    model = build_model({"backbone": name, "num_classes": classes})
    assert n_params(model) == expected
    assert list(model.attention_modules()) == []


def test_cifar_stem_changes_only_the_stem():
    imagenet = build_model({"backbone": "resnet18", "num_classes": 10})
    cifar = build_model({"backbone": "resnet18_cifar", "num_classes": 10})
    assert n_params(imagenet) - n_params(cifar) == 64 * 3 * (49 - 9)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert get_backbone("resnet18_cifar").input_size == (3, 32, 32)


# ResNet-50/101 with the ImageNet stem share every block with resnet50_cifar; their forward
# at any size is slow on a CPU, so their sizes are checked above without a forward pass.
FORWARD = [n for n in shipped_backbones() if n not in ("resnet50", "resnet101")]


@pytest.mark.parametrize("name", FORWARD)
def test_forward_shape_on_small_inputs(name):
    model = build_model({"backbone": name, "num_classes": 7}).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


def test_in_chans_and_backbone_args():
    model = build_model({"backbone": "tiny", "in_chans": 1, "num_classes": 3,
                         "backbone_args": {"width": 8, "blocks": 3}}).eval()
    assert [len(s) for s in model.stages] == [3, 3, 3]
    assert model.fc.in_features == 32
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    narrow = build_model({"backbone": "mobilenetv2", "backbone_args": {"width_mult": 0.5}})
    assert n_params(narrow) < n_params(build_model({"backbone": "mobilenetv2"}))


def test_tiny_is_small_and_has_two_blocks_per_stage():
    model = build_model({"backbone": "tiny"})
    assert [len(s) for s in model.stages] == [2, 2, 2]
    assert n_params(model) < 200_000
    assert get_backbone("tiny").input_size == (3, 32, 32)


def test_mobilenetv2_stages_are_the_seven_groups():
    layout = get_backbone("mobilenetv2").layout({"width_mult": 1.0})
    assert [len(s.blocks) for s in layout] == [1, 2, 3, 4, 3, 3, 1]
    assert [s.channels for s in layout] == [16, 24, 32, 64, 96, 160, 320]
    # mid only with an expansion, identity/post_add only with a residual
    assert "mid" not in layout[0].blocks[0].positions
    assert layout[1].blocks[1].positions["mid"] == 144
    assert layout[2].blocks[0].positions["mid"] == 144
    for stage in layout:
        assert "identity" not in stage.blocks[0].positions
        for b in stage.blocks[1:]:
            assert {"identity", "post_add"} <= set(b.positions)
        assert all(b.conv is None for b in stage.blocks)
        assert not stage.fusion and stage.fusion_reason


# ---------------------------------------------------------------------------------------------
# insertion points: what is built is what the layout says


def _module_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Channels of the tensor each inserted zoo module receives in a forward pass."""
    seen: dict[str, int] = {}

    def hook(name: str):
        def record(_m: nn.Module, args: tuple) -> None:
            seen.setdefault(name, args[0].shape[1])
        return record

    hooks = [m.register_forward_pre_hook(hook(name)) for name, m in model.attention_modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return seen


LAYOUT_CHECK = ["tiny", "resnet20", "resnet18_cifar", "resnet50_cifar", "mobilenetv2"]


@pytest.mark.parametrize("name", LAYOUT_CHECK)
@pytest.mark.parametrize("position", POSITIONS)
def test_built_gates_match_layout(name, position):
    spec = canonicalize({"backbone": name, "stages": stages_with(name, position)})
    model = build_model(spec)
    layout = get_backbone(name).layout(spec.backbone_args)
    expected = {}
    for si, info in enumerate(layout):
        for bi, blk in enumerate(info.blocks):
            if position in blk.positions:
                expected[f"{model.stages[si][bi].__class__.__name__}:{si}.{bi}"] = \
                    blk.positions[position]
    names = [n for n, _ in model.attention_modules()]
    assert len(names) == len(expected) > 0
    assert all(n.endswith(f"attn.{position}") for n in names)
    seen = _module_inputs(model, torch.randn(1, 3, 16, 16))
    got = {}
    for si, stage in enumerate(model.stages):
        for bi, block in enumerate(stage):
            if position in block.attn:
                name_ = next(n for n, m in model.attention_modules() if m is block.attn[position])
                got[f"{block.__class__.__name__}:{si}.{bi}"] = seen[name_]
    assert got == expected


@pytest.mark.parametrize("name", ["tiny", "resnet18_cifar"])
@pytest.mark.parametrize("position", POSITIONS)
def test_every_position_trains_with_se(name, position):
    model = build_model({"backbone": name, "num_classes": 5,
                         "stages": [{"attention": "se", "position": position}] * 3})
    x = torch.randn(2, 3, 8, 8)
    model(x).sum().backward()
    for qname, mod in model.attention_modules():
        for pname, p in mod.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{qname}.{pname}"


def test_position_semantics_on_a_basic_block():
    """pre gates only the residual branch; identity only the shortcut; post_add the output."""
    from nas_attn.arch import ModuleChoice
    from nas_attn.backbones._net import BlockPlan
    from nas_attn.backbones.blocks import BasicBlock

    zero = ModuleChoice("pam", {})  # gamma = 0 at init: an identity map, so tweak it below
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    plain = BasicBlock(8, 8).eval()
    for pos in POSITIONS:
        block = BasicBlock(8, 8, plan=BlockPlan(gates={pos: zero})).eval()
        block.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            assert torch.allclose(block(x), plain(x))  # gamma 0: same function
            block.attn[pos].gamma.fill_(1.0)
            z = block.forward_z(x)
        residual = z - x  # no downsample: the shortcut is x unless gated
        if pos == "identity":
            assert not torch.allclose(residual, plain.forward_z(x) - x)
            assert torch.allclose(z - block.attn[pos](x), plain.forward_z(x) - x, atol=1e-5)
        elif pos == "post_add":
            assert torch.allclose(z, plain.forward_z(x))
            assert not torch.allclose(block(x), plain(x))
        else:
            assert not torch.allclose(z, plain.forward_z(x))
        if pos == "pre":  # the shortcut still carries the ungated input
            with torch.no_grad():
                g = block.attn[pos](x)
                assert torch.allclose(z - x, plain.forward_z(g) - g, atol=1e-5)


def test_mobilenetv2_mid_placement_with_ca():
    spec = {"backbone": "mobilenetv2", "backbone_args": {"width_mult": 0.35},
            "stages": [None] + [{"attention": "ca", "position": "mid"}] * 6}
    model = build_model(spec)
    layout = get_backbone("mobilenetv2").layout({"width_mult": 0.35})
    names = [n for n, _ in model.attention_modules()]
    assert len(names) == sum(len(s.blocks) for s in layout[1:]) == 16
    assert all(n.startswith("layers.") and n.endswith(".attn.mid") for n in names)
    seen = _module_inputs(model, torch.randn(1, 3, 32, 32))
    hidden = [b.positions["mid"] for s in layout[1:] for b in s.blocks]
    assert [seen[n] for n in names] == hidden


@pytest.mark.parametrize("module", module_names("gate"))
def test_every_gate_module_in_tiny(module):
    model = build_model({"backbone": "tiny", "num_classes": 4,
                         "stages": [{"attention": module, "blocks": "last"}] * 3})
    assert len(list(model.attention_modules())) == 3
    model(torch.randn(2, 3, 16, 16)).sum().backward()


# ---------------------------------------------------------------------------------------------
# conv replacement and fusion


@pytest.mark.parametrize("module", module_names("conv"))
def test_conv_replacement_applies_to_every_block_of_the_stage(module):
    cls = MODULES.get(module).cls
    model = build_model({"backbone": "tiny", "num_classes": 4,
                         "stages": [None, {"conv": module}]})
    assert all(isinstance(b.conv1, cls) for b in model.layer2)
    assert not any(isinstance(b.conv1, cls) for b in [*model.layer1, *model.layer3])
    names = [n for n, _ in model.attention_modules()]
    assert names == ["layer2.0.conv1", "layer2.1.conv1"]
    y = model(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 4)
    y.sum().backward()
    assert all(p.grad is not None for b in model.layer2 for p in b.conv1.parameters())


def test_conv_replacement_resnet18_cifar_and_bottleneck():
    model = build_model({"backbone": "resnet18_cifar", "num_classes": 4,
                         "stages": [None, {"conv": "rfaconv", "attention": "se"}]}).eval()
    block = model.layer2[0]
    plain = create_module("rfaconv", 64, 128, 3, 2)
    assert n_params(block.conv1) == n_params(plain)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4)
    bott = build_model({"backbone": "resnet50_cifar", "stages": [{"conv": "rfaconv"}]})
    assert [type(b.conv2).__name__ for b in bott.layer1] == [type(plain).__name__] * 3
    assert bott.layer1[0].conv2(torch.randn(1, 64, 8, 8)).shape == (1, 64, 8, 8)


@pytest.mark.parametrize("name", ["tiny", "resnet18_cifar"])
def test_sda_fuses_the_pre_activation_outputs(name):
    model = build_model({"backbone": name, "num_classes": 4,
                         "stages": [None, {"fusion": "sda"}]}).eval()
    stage = model.layer2
    assert [n for n, _ in model.attention_modules()] == ["layer2.fusion"]
    x = torch.relu(torch.randn(2, stage[0].conv1.in_channels, 8, 8))
    with torch.no_grad():
        z0 = stage[0].forward_z(x)
        z1 = stage[1].forward_z(torch.relu(z0))
        assert (z0 < 0).any()  # pre-activation: the ReLU has not been applied
        assert torch.allclose(stage(x), stage.fusion([z0, z1]), atol=1e-6)
    model.train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in stage.fusion.parameters())


def test_sda_with_gates_inside_the_fused_stage():
    model = build_model({"backbone": "tiny", "stages": [
        {"fusion": "sda", "attention": "se", "position": "post_add", "blocks": [0]},
        {"fusion": "sda", "attention": "eca", "position": "identity"}]})
    names = [n for n, _ in model.attention_modules()]
    assert names == ["layer1.0.attn.post_add", "layer1.fusion", "layer2.0.attn.identity",
                     "layer2.1.attn.identity", "layer2.fusion"]
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    for n, m in model.attention_modules():
        assert all(p.grad is not None for p in m.parameters()), n


# ---------------------------------------------------------------------------------------------
# initialisation


def _every_module_spec() -> list[dict]:
    """Specs on tiny that together insert every registered module."""
    specs = [{"backbone": "tiny", "stages": [{"attention": g, "position": "post_bn"},
                                             {"attention": g, "position": "mid"},
                                             {"attention": g, "position": "identity"}]}
             for g in module_names("gate")]
    specs += [{"backbone": "tiny", "stages": [{"conv": c}]} for c in module_names("conv")]
    specs += [{"backbone": "tiny", "stages": [{"fusion": f}]} for f in module_names("fusion")]
    return specs


@pytest.mark.parametrize("spec", _every_module_spec(), ids=lambda s: str(s["stages"][0]))
def test_zoo_modules_keep_their_own_init(spec):
    """Parameters a zoo module initialises to a constant (CBAM's spatial BN weight 0, GC's last
    conv 0, Non-local's BN 0, DANet's gamma 0, SEM's affine 0/-1, ...) are untouched by the
    backbone's Kaiming/BN init."""
    torch.manual_seed(0)
    canon = canonicalize(spec)
    model = build_model(canon)
    layout = get_backbone("tiny").layout(canon.backbone_args)
    inserted = dict(model.attention_modules())
    assert inserted
    for si, (st, info) in enumerate(zip(canon.stages, layout, strict=True)):
        stage = model.stages[si]
        for bi, plan in enumerate(block_plans(st, info)):
            block = stage[bi]
            for pos, choice in plan.gates.items():
                args = (info.blocks[bi].positions[pos],)
                _same_constants(block.attn[pos], choice.type, args, choice.params)
            if plan.conv is not None:
                cin, cout, stride = info.blocks[bi].conv
                _same_constants(block.conv1, plan.conv.type, (cin, cout, 3, stride),
                                plan.conv.params)
        if st.fusion is not None:
            _same_constants(stage.fusion, st.fusion.type, (info.channels, len(info.blocks)),
                            st.fusion.params)


def _same_constants(inserted: nn.Module, name: str, args: tuple, hp) -> None:
    """Parameters that two fresh constructions (different seeds) agree on are the module's
    deterministic init; the inserted module must still hold exactly those values."""
    torch.manual_seed(1)
    a = dict(create_module(name, *args, **hp).named_parameters())
    torch.manual_seed(2)
    b = dict(create_module(name, *args, **hp).named_parameters())
    assert type(inserted) is MODULES.get(name).cls
    checked = 0
    for pname, p in inserted.named_parameters():
        if torch.equal(a[pname], b[pname]):
            assert torch.equal(p.detach(), a[pname].detach()), f"{name}.{pname}"
            checked += 1
    if name in ("cbam", "gc", "nonlocal", "pam", "cam", "sem"):
        assert checked, name  # the documented zero/constant inits exist and were compared


def test_se_keeps_pytorch_default_init_and_backbone_gets_kaiming():
    model = build_model({"backbone": "tiny", "stages": [None, None, {"attention": "se"}]})
    for _, se in model.attention_modules():
        # PyTorch's default conv init is uniform within 1/sqrt(fan_in); Kaiming fan_out of a
        # C -> C/16 conv would exceed that bound almost surely
        fan_in = se.fc1.in_channels
        assert se.fc1.weight.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6
    zoo = {id(m) for _, m in model.attention_modules()}
    zoo_params = {id(p) for _, m in model.attention_modules() for p in m.parameters()}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and id(m.weight) not in zoo_params:
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
    w = model.layer3[1].conv2.weight
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert abs(w.std().item() / math.sqrt(2 / fan_out) - 1) < 0.05
    assert zoo


def test_mobilenetv2_classifier_init():
    model = build_model({"backbone": "mobilenetv2", "num_classes": 50})
    w = model.classifier[1].weight
    assert abs(w.std().item() - 0.01) < 0.001
    assert torch.equal(model.classifier[1].bias, torch.zeros(50))


# ---------------------------------------------------------------------------------------------
# plumbing


def test_model_carries_its_canonical_spec():
    model = build_model({"backbone": "tiny", "stages": [{"attention": "se"}]})
    assert model.spec == canonicalize({"backbone": "tiny", "stages": [{"attention": "se"}]})
    assert f"spec={model.spec.hash}" in repr(model)


def test_find_zoo_modules_reports_outermost_only():
    outer = nn.Sequential(create_module("cbam", 32), nn.Sequential(create_module("se", 32)))
    assert [n for n, _ in find_zoo_modules(outer)] == ["0", "1.0"]
