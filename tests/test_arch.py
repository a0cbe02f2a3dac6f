"""The architecture spec: parsing, round trips, canonical form, hash stability and validation."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nas_attn.arch import (
    ArchSpec,
    ModuleChoice,
    build_model,
    canonicalize,
    load_spec,
    parse_spec,
    spec_hash,
)
from nas_attn.backbones import POSITIONS, get_backbone
from nas_attn.errors import ConfigError, SpecError
from nas_attn.modules import get_module, module_names

EXAMPLE = {
    "backbone": "tiny",
    "num_classes": 10,
    "stages": [
        {"attention": {"type": "se", "rd_ratio": 0.25}, "position": "post_bn", "blocks": "last"},
        {"attention": "eca", "position": "identity", "blocks": [0, 1], "fusion": "sda"},
        {"conv": "rfaconv", "attention": "cbam", "position": "mid", "blocks": [-2]},
    ],
}


# ---------------------------------------------------------------------------------------------
# round trips


def test_canonical_form_of_the_example():
    canon = canonicalize(EXAMPLE)
    assert canon.backbone_args == {"width": 16, "blocks": 2}
    s0, s1, s2 = canon.stages
    assert s0.attention == ModuleChoice("se", {"rd_ratio": 0.25, "rd_divisor": 1})
    assert s0.blocks == (1,)
    assert s1.blocks == "all" and s1.fusion == ModuleChoice("sda", get_module("sda").validate(
        {}, "sda"))
    assert s2.blocks == (0,) and s2.conv.type == "rfaconv"
    assert canonicalize(canon) == canon  # idempotent


@pytest.mark.parametrize("fmt", ["dict", "json", "yaml"])
def test_round_trips(fmt):
    canon = canonicalize(EXAMPLE)
    if fmt == "dict":
        again = canonicalize(canon.to_dict())
    elif fmt == "json":
        again = canonicalize(json.loads(canon.to_json()))
    else:
        again = canonicalize(yaml.safe_load(canon.to_yaml()))
    assert again == canon
    assert again.to_json() == canon.to_json()
    assert spec_hash(again) == spec_hash(canon) == canon.hash
    assert len(canon.hash) == 16 and int(canon.hash, 16) >= 0


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_load_and_build_from_a_file(tmp_path, suffix):
    path = tmp_path / f"spec{suffix}"
    text = json.dumps(EXAMPLE) if suffix == ".json" else yaml.safe_dump(EXAMPLE)
    path.write_text(text)
    assert load_spec(path) == canonicalize(EXAMPLE)
    model = build_model(str(path))
    assert model.spec == canonicalize(EXAMPLE)
    assert len(list(model.attention_modules())) == 1 + 2 + 1 + 2 + 1


def test_load_spec_unwraps_a_spec_key(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump({"spec": EXAMPLE, "accuracy": 0.9}))
    assert load_spec(path) == canonicalize(EXAMPLE)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        build_model(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# hash stability: any rewrite of a spec that builds the same network has the same hash

BACKBONES_UNDER_TEST = ["tiny", "resnet18_cifar", "mobilenetv2", "resnet20"]
GATES = {"se": {"rd_ratio": [0.0625, 0.125, 0.25]}, "eca": {}, "cbam": {"rd_ratio": [0.125]},
         "ca": {}}


@st.composite
def canonical_specs(draw) -> ArchSpec:
    """A random valid spec, returned canonical."""
    backbone = draw(st.sampled_from(BACKBONES_UNDER_TEST))
    args = {}
    if backbone == "tiny":
        args = {"width": draw(st.sampled_from([8, 16])), "blocks": draw(st.integers(1, 3))}
    layout = get_backbone(backbone).layout(canonicalize(
        {"backbone": backbone, "backbone_args": args}).backbone_args)
    stages = []
    for info in layout:
        stage: dict = {}
        n = len(info.blocks)
        if draw(st.booleans()):
            gate = draw(st.sampled_from(sorted(GATES)))
            hp = {k: draw(st.sampled_from(v)) for k, v in GATES[gate].items()
                  if draw(st.booleans())}
            position = draw(st.sampled_from([p for p in POSITIONS
                                             if any(p in b.positions for b in info.blocks)]))
            has = [i for i, b in enumerate(info.blocks) if position in b.positions]
            chosen = draw(st.lists(st.sampled_from(has), min_size=1, unique=True))
            stage.update(attention={"type": gate, **hp}, position=position, blocks=sorted(chosen))
        if info.blocks[0].conv is not None and draw(st.integers(0, 3)) == 0:
            stage["conv"] = "rfaconv"
        if info.fusion and n > 1 and draw(st.integers(0, 3)) == 0 and not (
            stage.get("position") == "post_add" and n - 1 in stage["blocks"]
        ):
            stage["fusion"] = "sda"
        stages.append(stage)
    spec = {"backbone": backbone, "backbone_args": args,
            "num_classes": draw(st.sampled_from([10, 100])),
            "in_chans": draw(st.sampled_from([3, 1])), "stages": stages}
    try:
        return canonicalize(spec)
    except SpecError:  # a module's own constraint (e.g. too few channels); rare
        assume(False)
        raise


def _shuffled(draw, d: dict) -> dict:
    keys = draw(st.permutations(list(d)))
    return {k: d[k] for k in keys}


def _rewrite_choice(draw, choice: ModuleChoice | None, none_forms: list) -> object:
    if choice is None:
        return draw(st.sampled_from(none_forms))
    defaults = get_module(choice.type).hparams.defaults()
    params = {k: v for k, v in choice.params.items()
              if not (v == defaults[k] and draw(st.booleans()))}
    if not params and draw(st.booleans()):
        return choice.type
    return _shuffled(draw, {"type": choice.type, **params})


def _rewrite_blocks(draw, blocks, has: list[int], n: int):
    if blocks == "all":
        forms: list = ["all", list(has), [i - n for i in has]]
        if has == [0]:
            forms += ["first", 0, -n]
        if has == [n - 1]:
            forms += ["last", n - 1, -1]
        return draw(st.sampled_from(forms))
    idx = [i - n if draw(st.booleans()) else i for i in blocks]
    idx = draw(st.permutations(idx))
    forms = [list(idx)]
    if list(blocks) == [0]:
        forms += ["first", 0]
    if list(blocks) == [n - 1]:
        forms += ["last", -1]
    return draw(st.sampled_from(forms))


@st.composite
def rewrites(draw, canon: ArchSpec) -> dict:
    """An equivalent, non-canonical way of writing ``canon``."""
    layout = get_backbone(canon.backbone).layout(canon.backbone_args)
    defaults = get_backbone(canon.backbone).hparams.defaults()
    stages = []
    for stage, info in zip(canon.stages, layout, strict=True):
        n = len(info.blocks)
        d: dict = {}
        if stage.attention is None:
            # position and blocks cannot matter without attention
            if draw(st.booleans()):
                d["attention"] = draw(st.sampled_from([None, "none", {"type": "none"}]))
            if draw(st.booleans()):
                d["position"] = draw(st.sampled_from(POSITIONS))
            if draw(st.booleans()):
                d["blocks"] = draw(st.sampled_from(["all", "first", "last", [0], [-1], [5]]))
        else:
            d["attention"] = _rewrite_choice(draw, stage.attention, [])
            if stage.position != "post_bn" or draw(st.booleans()):
                d["position"] = stage.position
            has = [i for i, b in enumerate(info.blocks) if stage.position in b.positions]
            blocks = _rewrite_blocks(draw, stage.blocks, has, n)
            if blocks != "all" or draw(st.booleans()):
                d["blocks"] = blocks
        conv = _rewrite_choice(draw, stage.conv, ["standard", None, "none", {"type": "standard"},
                                                  "<omit>"])
        if conv != "<omit>":
            d["conv"] = conv
        fusion = _rewrite_choice(draw, stage.fusion, ["none", None, {"type": "none"}, "<omit>"])
        if fusion != "<omit>":
            d["fusion"] = fusion
        stages.append(_shuffled(draw, d) if d or draw(st.booleans()) else None)
    while stages and not stages[-1] and draw(st.booleans()):
        stages.pop()  # omitted trailing stages have no attention
    spec: dict = {"backbone": canon.backbone, "stages": stages}
    args = {k: v for k, v in canon.backbone_args.items()
            if not (v == defaults[k] and draw(st.booleans()))}
    if args or draw(st.booleans()):
        spec["backbone_args"] = _shuffled(draw, args)
    if canon.num_classes != 10 or draw(st.booleans()):
        spec["num_classes"] = canon.num_classes
    if canon.in_chans != 3 or draw(st.booleans()):
        spec["in_chans"] = canon.in_chans
    spec = _shuffled(draw, spec)
    via = draw(st.sampled_from(["dict", "json", "yaml"]))
    if via == "json":
        return json.loads(json.dumps(spec))
    if via == "yaml":
        return yaml.safe_load(yaml.safe_dump(spec, sort_keys=False))
    return spec


HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(st.data())
def test_equivalent_writings_share_canonical_form_and_hash(data):
    canon = data.draw(canonical_specs())
    written = data.draw(rewrites(canon))
    assert canonicalize(written) == canon
    assert spec_hash(written) == spec_hash(canon)
    assert canonicalize(canon) == canon


@HYP
@given(canonical_specs(), canonical_specs())
def test_distinct_networks_have_distinct_hashes(a, b):
    assert (a.to_json() == b.to_json()) == (spec_hash(a) == spec_hash(b))


def test_hash_changes_with_every_setting():
    base = {"backbone": "tiny", "stages": [{"attention": "se", "blocks": [0]}]}
    variants = [
        base,
        {"backbone": "resnet20", "stages": [{"attention": "se", "blocks": [0]}]},
        {**base, "num_classes": 11},
        {**base, "in_chans": 1},
        {**base, "backbone_args": {"width": 8}},
        {**base, "stages": [{"attention": "eca", "blocks": [0]}]},
        {**base, "stages": [{"attention": {"type": "se", "rd_ratio": 0.25}, "blocks": [0]}]},
        {**base, "stages": [{"attention": "se", "blocks": [1]}]},
        {**base, "stages": [{"attention": "se"}]},
        {**base, "stages": [{"attention": "se", "blocks": [0], "position": "pre"}]},
        {**base, "stages": [None, {"attention": "se", "blocks": [0]}]},
        {**base, "stages": [{"attention": "se", "blocks": [0], "conv": "rfaconv"}]},
        {**base, "stages": [{"attention": "se", "blocks": [0], "fusion": "sda"}]},
        {"backbone": "tiny"},
    ]
    hashes = [spec_hash(v) for v in variants]
    assert len(set(hashes)) == len(variants)


def test_keyword_and_index_equivalences():
    def h(blocks, backbone="resnet18_cifar"):
        return spec_hash({"backbone": backbone,
                          "stages": [{"attention": "se", "blocks": blocks}]})

    assert h("first") == h([0]) == h(0) == h([-2])
    assert h("last") == h([1]) == h([-1]) == h(-1)
    assert h("all") == h([0, 1]) == h([1, 0]) == h([-1, 0])
    assert h("first") != h("last") != h("all")
    null = {"backbone": "tiny"}
    for pos in POSITIONS:
        for blocks in ("all", "first", [1]):
            assert spec_hash({"backbone": "tiny", "stages": [
                {"attention": None, "position": pos, "blocks": blocks}]}) == spec_hash(null)


def test_all_means_every_block_that_has_the_position():
    # identity exists only in MobileNetV2 blocks with a residual: stage 2 blocks 1 and 2
    spec = {"backbone": "mobilenetv2",
            "stages": [None, None, {"attention": "se", "position": "identity"}]}
    explicit = {"backbone": "mobilenetv2",
                "stages": [None, None, {"attention": "se", "position": "identity",
                                        "blocks": [1, 2]}]}
    assert canonicalize(explicit).stages[2].blocks == "all"
    assert spec_hash(spec) == spec_hash(explicit)


# ---------------------------------------------------------------------------------------------
# validation errors name the field, the stage, the module and the reason


def _error(spec) -> SpecError:
    with pytest.raises(SpecError) as e:
        canonicalize(spec)
    return e.value


def test_ela_t_at_144_channels_of_mobilenetv2():
    ela_t = {"type": "ela", "version": "T"}
    e = _error({"backbone": "mobilenetv2",
                "stages": [None, None, {"attention": ela_t, "position": "mid"}]})
    assert e.field == "stages[2].attention"
    assert "ela" in str(e) and "stage 2 block 0" in str(e) and "144" in str(e)
    # stage 1: 96 hidden channels in block 0 (fine), 144 in block 1
    e = _error({"backbone": "mobilenetv2",
                "stages": [None, {"attention": ela_t, "position": "mid"}]})
    assert "stage 1 block 1" in str(e) and "144" in str(e)
    ok = canonicalize({"backbone": "mobilenetv2",
                       "stages": [None, {"attention": ela_t, "position": "mid", "blocks": [0]}]})
    assert ok.stages[1].blocks == (0,)


def test_sda_on_a_one_block_stage():
    e = _error({"backbone": "tiny", "backbone_args": {"blocks": 1},
                "stages": [{"fusion": "sda"}]})
    assert e.field == "stages[0].fusion" and "1 block" in str(e) and "sda" in str(e)
    assert e.choices == ["none"]


def test_sda_on_mobilenetv2_is_refused_with_the_reason():
    e = _error({"backbone": "mobilenetv2", "stages": [None, {"fusion": "sda"}]})
    assert e.field == "stages[1].fusion" and "MobileNetV2" in str(e)


def test_post_add_on_the_last_block_of_a_fused_stage():
    e = _error({"backbone": "tiny",
                "stages": [{"fusion": "sda", "attention": "se", "position": "post_add"}]})
    assert e.field == "stages[0].position" and "never run" in str(e)
    canonicalize({"backbone": "tiny", "stages": [
        {"fusion": "sda", "attention": "se", "position": "post_add", "blocks": "first"}]})


def test_mid_on_mobilenetv2_stage_0():
    e = _error({"backbone": "mobilenetv2", "stages": [{"attention": "ca", "position": "mid"}]})
    assert e.field == "stages[0].position" and e.value == "mid"
    assert "mid" not in e.choices and "post_bn" in e.choices


def test_block_without_the_position():
    e = _error({"backbone": "mobilenetv2",
                "stages": [None, {"attention": "se", "position": "identity", "blocks": "first"}]})
    assert e.field == "stages[1].blocks" and e.choices == [1]


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"backbone": "tiny", "stage": []}, "stage"),
     ({"backbone": "tiny", "stages": [{"attn": "se"}]}, "stages[0].attn"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "posiiton": "mid"}]},
      "stages[0].posiiton")],
)
def test_unknown_keys(spec, field):
    e = _error(spec)
    assert e.field == field and "unknown key" in str(e) and e.choices


def test_unknown_module_lists_the_modules_of_that_kind():
    e = _error({"backbone": "tiny", "stages": [None, {"attention": "sse"}]})
    assert e.field == "stages[1].attention.type" and e.value == "sse"
    assert e.choices == module_names("gate")
    e = _error({"backbone": "tiny", "stages": [{"attention": "rfaconv"}]})
    assert "conv module" in str(e) and e.choices == module_names("gate")
    e = _error({"backbone": "tiny", "stages": [{"conv": "se"}]})
    assert e.field == "stages[0].conv" and e.choices == module_names("conv")


def test_rfaconv_on_mobilenetv2():
    e = _error({"backbone": "mobilenetv2", "stages": [None, None, {"conv": "rfaconv"}]})
    assert e.field == "stages[2].conv" and "no replaceable 3x3 conv" in str(e)
    assert e.choices == ["standard"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"backbone": "resnet19"}, "backbone"),
     ({"backbone": "tiny", "stages": [None] * 4}, "stages"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "position": "middle"}]},
      "stages[0].position"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "blocks": [2]}]}, "stages[0].blocks"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "blocks": [0, -2]}]},
      "stages[0].blocks"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "blocks": "some"}]},
      "stages[0].blocks"),
     ({"backbone": "tiny", "stages": [{"attention": "se", "blocks": []}]}, "stages[0].blocks"),
     ({"backbone": "tiny", "stages": [{"attention": {"type": "se", "rd_ratio": 3}}]},
      "stages[0].attention.rd_ratio"),
     ({"backbone": "tiny", "stages": [{"attention": {"type": "se", "r": 16}}]},
      "stages[0].attention.r"),
     ({"backbone": "tiny", "stages": [{"attention": {"rd_ratio": 0.5}}]},
      "stages[0].attention.type"),
     ({"backbone": "tiny", "stages": [{"conv": {"type": "standard", "k": 3}}]},
      "stages[0].conv.k"),
     ({"backbone": "tiny", "backbone_args": {"width": 12}}, "backbone_args.width"),
     ({"backbone": "tiny", "backbone_args": {"depth": 2}}, "backbone_args.depth"),
     ({"backbone": "tiny", "num_classes": 0}, "num_classes"),
     ({"backbone": "tiny", "in_chans": "rgb"}, "in_chans"),
     ({"stages": []}, "backbone")],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ConfigError) as e:
        canonicalize(spec)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_parse_spec_alone_does_not_need_the_backbone():
    spec = parse_spec({"backbone": "not-yet-registered", "stages": [{"attention": "x"}]})
    assert spec.stages[0].attention == ModuleChoice("x", {})
    with pytest.raises(SpecError):
        canonicalize(spec)
