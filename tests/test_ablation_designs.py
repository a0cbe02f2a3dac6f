"""Ablation designs generate exactly the expected arms from a base spec."""

from __future__ import annotations

import pytest

from nas_attn.ablation import cells_frame, factorial, loo, ofat, parse_factor, swap
from nas_attn.arch import ArchSpec, canonicalize, spec_hash
from nas_attn.backbones import BACKBONES, BlockInfo, StageInfo, register_backbone
from nas_attn.errors import ConfigError, SpecError
from nas_attn.modules import MODULES, module_names

NET = "ablation_test_net"
CHANNELS = (16, 12, 12)  # 12 channels: PAM (C % 8), GC (C/16 < 1) and ELA-B (C % 16) cannot go


def _layout(_args) -> tuple[StageInfo, ...]:
    return tuple(
        StageInfo(blocks=tuple(BlockInfo({"pre": c, "post_bn": c, "post_add": c}, (c, c, 1))
                               for _ in range(2)), channels=c)
        for c in CHANNELS)


def _no_build(spec):
    raise AssertionError("designs never build models")


if NET not in BACKBONES:
    register_backbone(NET, build=_no_build, layout=_layout, input_size=(3, 8, 8))


def spec(*stages) -> ArchSpec:
    return canonicalize({"backbone": NET, "stages": list(stages)})


SE12 = spec(None, {"attention": "se"}, {"attention": "se"})  # SE at stages 1 and 2


def names(d):
    return [a.name for a in d.arms]


def test_loo_base_plus_one_arm_per_placement():
    d = loo(SE12)
    assert names(d) == ["base", "loo:stage1.attention", "loo:stage2.attention"]
    assert d.arms[0].spec == SE12 and d.arms[0].factor is None
    assert d.arms[1].spec == spec(None, None, {"attention": "se"})
    assert d.arms[2].spec == spec(None, {"attention": "se"}, None)
    assert d.arms[1].description == "without SE at stage 1"
    assert d.skipped == [] and d.notes == []


def test_loo_counts_conv_and_fusion_placements_and_plain():
    base = spec({"attention": "eca", "conv": "rfaconv"}, {"fusion": "sda"}, None)
    d = loo(base, include_plain=True)
    assert names(d) == ["base", "loo:stage0.attention", "loo:stage0.conv",
                        "loo:stage1.fusion", "plain"]
    assert d.arms[2].spec == spec({"attention": "eca"}, {"fusion": "sda"}, None)
    assert d.arms[-1].spec == spec(None, None, None)
    with pytest.raises(ConfigError, match="no attention"):
        loo(spec(None, None, None))


def test_swap_every_other_gate_module_with_invalid_ones_reported():
    d = swap(SE12)
    skipped = {desc.split(" ")[0].removeprefix("swap:") for desc, _ in d.skipped}
    assert {"pam", "gc", "ela"} <= skipped  # cannot go at 12 channels
    assert d.skipped[0][0].startswith("swap:pam (PAM instead of SE at stages 1, 2)")
    expected = [m for m in module_names("gate") if m != "se" and m not in skipped]
    assert {"eca", "cbam", "ca"} <= set(expected)
    assert names(d) == ["base", *(f"swap:{m}" for m in expected)]
    assert len(d.arms) == 1 + len(module_names("gate")) - 1 - len(d.skipped)
    for arm, m in zip(d.arms[1:], expected, strict=True):
        defaults = MODULES.get(m).hparams.defaults()
        assert arm.spec.stages[0].attention is None
        for st in arm.spec.stages[1:]:
            assert st.attention.type == m and dict(st.attention.params) == defaults
            assert st.position == "post_bn"
        assert arm.factor == "all.attention" and arm.level == m
    assert all(reason for _, reason in d.skipped)


def test_swap_explicit_modules_and_unknown_module():
    d = swap(SE12, modules=["eca", "cbam"])
    assert names(d) == ["base", "swap:eca", "swap:cbam"]
    assert d.arms[1].description == "ECA instead of SE at stages 1, 2"
    with pytest.raises(ConfigError) as e:
        swap(SE12, modules=["eca", "eac"])
    assert e.value.field == "modules" and e.value.value == "eac" and "eca" in e.value.choices


def test_ofat_hparam_levels_and_duplicates_noted():
    d = ofat(SE12, {"stage2.attention.rd_ratio": [0.25, 1 / 16, 0.125]})
    assert names(d) == ["base", "stage2.attention.rd_ratio=0.25",
                        "stage2.attention.rd_ratio=0.125"]
    assert d.arms[1].spec.stages[2].attention.params["rd_ratio"] == 0.25
    assert d.arms[1].spec.stages[1] == SE12.stages[1]
    assert d.arms[1].description == "SE rd_ratio=0.25 instead of 0.0625 at stage 2"
    assert len(d.notes) == 1 and "same network as arm 'base'" in d.notes[0]


def test_ofat_categorical_defaults_from_declaration_skip_invalid():
    base = spec({"attention": "ela"}, None, None)  # 16 channels: ELA-T needs 32 GN groups
    d = ofat(base, ["stage0.attention.version"])
    assert names(d) == ["base", "stage0.attention.version=S", "stage0.attention.version=L"]
    assert len(d.skipped) == 1 and d.skipped[0][0].startswith("stage0.attention.version=T ")
    assert "ELA-T" in d.skipped[0][1]
    assert len(d.notes) == 1  # version B is the base


def test_ofat_all_position_and_module_type():
    d = ofat(SE12, {"all.position": ["pre", "post_add"], "stage0.attention": ["eca", "none"]})
    assert names(d) == ["base", "all.position=pre", "all.position=post_add",
                        "stage0.attention=eca"]
    assert [s.position for s in d.arms[1].spec.stages] == ["post_bn", "pre", "pre"]
    assert d.arms[3].spec.stages[0].attention.type == "eca"
    assert d.arms[3].description == "ECA added at stage 0"
    # identical specs get identical hashes, distinct arms distinct ones
    assert len({spec_hash(a.spec) for a in d.arms}) == len(d.arms)


def test_ofat_default_module_levels_cover_the_zoo():
    d = ofat(SE12, ["stage1.attention"])
    produced = {a.level for a in d.arms[1:]}
    skipped = {s.split(" ")[0].split("=")[1] for s, _ in d.skipped}
    assert produced | skipped | {"se"} == {*module_names("gate"), None}
    assert not produced & skipped
    assert d.arms[1].name == "stage1.attention=none"
    assert d.arms[1].description == "without SE at stage 1"


@pytest.mark.parametrize(("factor", "field_part"), [
    ("stage9.attention", "has 3 stages"),
    ("stage0.position", "no attention module at stage 0"),
    ("stage1.attention.nope", "no hyperparameter 'nope'"),
    ("stage1.colour", "unknown setting"),
    ("stage1.position.x", "has no hyperparameters"),
    ("layer1.attention", "cannot parse"),
])
def test_bad_factors_raise_config_error(factor, field_part):
    with pytest.raises(ConfigError, match=field_part) as e:
        parse_factor(factor, SE12)
    assert e.value.field == "factor" and e.value.value == factor
    assert not isinstance(e.value, SpecError)


def test_bad_levels_raise_config_error():
    with pytest.raises(ConfigError) as e:
        ofat(SE12, {"stage1.attention": ["eac"]})
    assert e.value.field == "levels[stage1.attention]" and "eca" in e.value.choices
    with pytest.raises(ConfigError, match="out of range"):
        ofat(SE12, {"stage1.attention.rd_ratio": [2.0]})
    with pytest.raises(ConfigError, match="unknown position"):
        ofat(SE12, {"all.position": ["middle"]})


def test_stages_bracket_synonym():
    assert parse_factor("stages[2].attention.rd_ratio", SE12).stage == 2


def test_factorial_product_of_levels_with_cells():
    d = factorial(SE12, {"stage1.attention": ["se", "eca"], "stage2.position": ["post_bn", "pre"]})
    assert names(d) == ["base", "stage1.attention=se,stage2.position=pre",
                        "stage1.attention=eca,stage2.position=post_bn",
                        "stage1.attention=eca,stage2.position=pre"]
    assert d.arms[0].level == ("se", "post_bn")  # the base is a cell
    assert [c.arm for c in d.cells] == names(d)
    frame = cells_frame(d)
    assert list(frame.columns) == ["arm", "stage1.attention", "stage2.position"]
    assert frame["stage1.attention"].tolist() == ["se", "se", "eca", "eca"]
    assert d.arms[2].description == "ECA instead of SE at stage 1"
    last = d.arms[3].spec
    assert last.stages[1].attention.type == "eca" and last.stages[2].position == "pre"


def test_factorial_three_factors_and_refusals():
    d = factorial(SE12, {"stage1.attention": ["se", "eca"], "stage2.attention": ["se", None],
                         "stage0.attention": [None, "cbam"]})
    assert len(d.arms) == 8 and len(d.cells) == 8
    with pytest.raises(ConfigError, match="2 or 3 factors"):
        factorial(SE12, {"stage1.attention": ["se", "eca"]})
    with pytest.raises(ConfigError, match="set the same thing"):
        factorial(SE12, {"stage1.attention": ["se", "eca"],
                         "stage1.attention.rd_ratio": [0.25, 0.125]})
