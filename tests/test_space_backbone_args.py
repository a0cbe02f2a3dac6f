"""Searched backbone arguments (``backbone_args: {width: [8, 16]}``): the decision, its size,
its layouts checked at parse time, and what refuses it."""

from __future__ import annotations

import optuna
import pytest

from nas_attn.cost import profile
from nas_attn.errors import ConfigError
from nas_attn.space import parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SEARCHED = {
    "backbone": "tiny",
    "backbone_args": {"width": [8, 16], "blocks": {"low": 1, "high": 2}},
    "stages": {"default": {"attention": {"none": None, "se": None}, "position": ["post_bn"]}},
}


def test_searched_args_are_decisions_made_after_the_backbone():
    s = parse_space(SEARCHED)
    assert s.backbone_args == {} and set(s.searched_backbone_args) == {"width", "blocks"}
    assert list(s.distributions())[:2] == ["backbone_args.width", "backbone_args.blocks"]
    points = list(s.enumerate())
    assert s.size() == len(points) == 2 * 2 * 2 ** 3  # width x blocks x (none|se) per stage
    seen = {(p.spec.backbone_args["width"], p.spec.backbone_args["blocks"]) for p in points}
    assert seen == {(8, 1), (8, 2), (16, 1), (16, 2)}
    # the choice reaches the network: a wider, deeper plain net costs more
    plain = {p.spec.backbone_args["width"] * 10 + p.spec.backbone_args["blocks"]: p.spec
             for p in points if all(not st.attention for st in p.spec.stages)}
    flops = {k: profile(v, input_size=(3, 16, 16)).flops for k, v in plain.items()}
    assert flops[81] < flops[82] < flops[161] < flops[162]


def test_a_trial_records_the_searched_args_and_build_repeats_it():
    s = parse_space(SEARCHED)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    widths = set()
    for _ in range(12):
        trial = study.ask()
        spec = s.suggest(trial)
        assert trial.params["backbone_args.width"] == spec.backbone_args["width"]
        assert s.build(trial.params).hash == spec.hash
        widths.add(spec.backbone_args["width"])
        study.tell(trial, 0.0)
    assert widths == {8, 16}


def test_fixed_args_keep_the_space_hash_and_round_trip():
    fixed = {**SEARCHED, "backbone_args": {"width": 16}}
    a, b = parse_space(fixed), parse_space(SEARCHED)
    assert a.searched_backbone_args == {} and a.backbone_args == {"width": 16}
    assert a.hash != b.hash
    again = parse_space(b.to_dict())
    assert again.hash == b.hash and again.searched_backbone_args == b.searched_backbone_args


def test_every_layout_is_checked_at_parse_time():
    """ELA-B needs 16 channels per GroupNorm: fine at width 16 in stage 0, not at width 8; the
    space is valid (other specs build) but its width-8 ELA specs are impossible combinations."""
    d = {**SEARCHED, "backbone_args": {"width": [8, 16]},
         "stages": {"default": {"attention": {"none": None, "ela": {"version": "B"}}}}}
    s = parse_space(d)
    bad = [p for p in s.enumerate() if p.spec is None]
    assert bad and all(p.params["backbone_args.width"] == 8 for p in bad)
    # a block index that exists only in the deeper layout is refused up front
    d = {**SEARCHED, "stages": {"default": {"attention": "se", "blocks": [[1]]}}}
    with pytest.raises(ConfigError) as e:
        parse_space(d)
    assert e.value.field == "stages.default.blocks[0]" and "out of range" in str(e.value)


@pytest.fixture
def scaled_backbone():
    """A registered backbone with a float and a wide int argument (tiny's layout and build)."""
    from nas_attn.backbones import BACKBONES, get_backbone, register_backbone
    from nas_attn.hparams import HParam

    tiny = get_backbone("tiny")
    name = "test_scaled_tiny"
    register_backbone(name, build=tiny.build, layout=lambda args: tiny.layout({}),
                      hparams=(HParam("scale", "float", default=1.0, low=0.5, high=2.0),
                               HParam("repeats", "int", default=1, low=1, high=100)),
                      input_size=(3, 32, 32))
    yield name
    BACKBONES.unregister(name)


@pytest.mark.parametrize("args, backbone, field, needle", [
    ({"width": [8, 12]}, "tiny", "backbone_args.width[1]", "16"),
    ({"depth": [1, 2]}, "tiny", "backbone_args.depth", "width"),
    ({"width": []}, "tiny", "backbone_args.width", "empty"),
    ({"width_mult": {"low": 0.5, "high": 1.0}}, "mobilenetv2", "backbone_args.width_mult",
     "list of choices"),
    ({"blocks": [1, 2]}, ["tiny", "resnet20"], "backbone_args.blocks", "single backbone"),
    ("wide", "tiny", "backbone_args", "mapping"),
])
def test_bad_searched_args_name_the_field(args, backbone, field, needle):
    with pytest.raises(ConfigError) as e:
        parse_space({**SEARCHED, "backbone": backbone, "backbone_args": args})
    assert e.value.field == field, e.value
    assert needle in str(e.value)


def test_an_unstepped_float_or_too_many_layouts_are_refused(scaled_backbone):
    def parse(args):
        return parse_space({"backbone": scaled_backbone, "backbone_args": args})

    assert parse({"scale": [0.5, 1.0], "repeats": {"low": 1, "high": 32}}).size() == 64
    with pytest.raises(ConfigError) as e:
        parse({"scale": {"low": 0.5, "high": 1.0}})
    assert e.value.field == "backbone_args.scale" and "finite" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse({"scale": [0.5, 1.0], "repeats": {"low": 1, "high": 33}})
    assert e.value.field == "backbone_args" and "66 combinations" in str(e.value)
    assert "at most 64" in str(e.value)


def test_the_supernet_refuses_a_searched_arg():
    from nas_attn.oneshot.supernet import check_space

    with pytest.raises(ConfigError) as e:
        check_space(parse_space(SEARCHED))
    assert e.value.field.startswith("space.backbone_args.") and "one value" in str(e.value)


def test_backbone_weights_refuse_a_searched_arg(tmp_path):
    from nas_attn.search.study import load_study

    (tmp_path / "w.safetensors").write_bytes(b"")
    study = tmp_path / "s.yaml"
    study.write_text("space:\n  backbone: tiny\n  backbone_args: {width: [8, 16]}\n"
                     "backbone_weights: w.safetensors\n"
                     "data: {name: synthetic}\nobjectives: [{name: val_accuracy, direction: "
                     "maximize}]\n")
    with pytest.raises(ConfigError) as e:
        load_study(study)
    assert "backbone_weights" in e.value.field and "backbone_args.width" in str(e.value)




def test_shipped_quickstart_spans_the_cost_axis_by_width_and_depth():
    import random

    from nas_attn.space import load_space

    s = load_space("search_spaces/quickstart.yaml")
    assert {k: d.size for k, d in s.searched_backbone_args.items()} == {"width": 2, "blocks": 2}
    assert "ela" not in s.stages[0].attention and all("ela" in st.attention for st in s.stages[1:])
    rng = random.Random(0)
    points = [s.point(s.sample_params(rng)) for _ in range(200)]
    assert all(p.spec is not None for p in points), [p.error for p in points if p.error][:1]
    flops = [profile(p.spec, input_size=(3, 16, 16)).flops for p in points]
    assert max(flops) > 5 * min(flops)  # capacity spans the FLOPs axis; attention alone: 1.14x
    assert max(flops) <= s.constraints.network.max_flops  # the limit refuses nothing
    assert load_space("search_spaces/quickstart_attention.yaml").searched_backbone_args == {}
