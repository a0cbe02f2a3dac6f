"""The search-space language: parsing, validation, Optuna suggestions, size and enumeration."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_attn.arch import canonicalize
from nas_attn.cli import main
from nas_attn.errors import ConfigError, SpecError
from nas_attn.space import (
    FloatRange,
    IntRange,
    dry_run,
    load_space,
    parse_amount,
    parse_space,
)

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL = {
    "backbone": "tiny",
    "stages": {
        "default": {
            "attention": {"none": None, "se": {"rd_ratio": [0.0625, 0.25]}, "eca": None},
            "position": ["post_bn", "post_add"],
            "blocks": ["all", "last"],
        },
        2: {"fusion": ["none", "sda"]},
    },
}


def space(d=None, **over):
    return parse_space({**(d or SMALL), **over})


# -- shipped files ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_space_loads_and_round_trips(path):
    s = load_space(path)
    assert s.size() > 0
    again = parse_space(s.to_dict())
    assert again.to_dict() == s.to_dict()
    assert again.hash == s.hash
    points = [s.point(s.sample_params(random.Random(seed))) for seed in range(8)]
    for p in points:  # exactly one of a canonical spec and the reason it cannot be built
        assert (p.spec is None) == isinstance(p.error, SpecError)
        if p.spec is not None:
            assert canonicalize(p.spec) == p.spec
    assert any(p.spec is not None for p in points), "no valid spec in 8 draws"


def test_expected_shipped_spaces_exist():
    names = {p.stem for p in SPACES}
    assert {"quickstart", "resnet18_cifar_zoo", "mobilenetv2_mid", "resnet50_imagenet",
            "se_integration"} <= names


# -- size, enumeration, product formula ------------------------------------------------------


def test_size_is_the_product_formula_and_matches_enumeration():
    s = space()
    # per stage: none + (se 2 + eca 1) * 2 positions * 2 block selections = 13; stage 2 x2 fusion
    assert s.size() == 13 * 13 * 26
    points = list(s.enumerate())
    assert len(points) == s.size()
    assert len({json.dumps(p.params, sort_keys=True) for p in points}) == len(points)


def test_tied_stages_make_one_decision():
    s = load_space(ROOT / "search_spaces/se_integration.yaml")
    points = list(s.enumerate())
    assert s.size() == len(points) == 5
    positions = set()
    for p in points:
        assert p.spec is not None
        atts = {json.dumps(st.to_dict()) for st in p.spec.stages}
        assert len(atts) == 1  # every stage the same
        positions.add(p.spec.stages[0].position if p.spec.stages[0].attention else None)
    assert positions == {None, "post_bn", "pre", "post_add", "identity"}
    assert all(k.startswith("all_stages.") for p in points for k in p.params)


@given(
    n_se=st.integers(1, 3), n_pos=st.integers(1, 3), n_blocks=st.integers(1, 3),
    with_eca=st.booleans(), with_cbam_range=st.booleans(), fusion=st.booleans(),
)
@settings(max_examples=15, deadline=None)
def test_size_equals_enumeration_property(n_se, n_pos, n_blocks, with_eca, with_cbam_range,
                                          fusion):
    att = {"none": None, "se": {"rd_ratio": [0.0625, 0.125, 0.25][:n_se]}}
    if with_eca:
        att["eca"] = {"kernel_size": [3, 5]}
    if with_cbam_range:
        att["cra"] = {"pool_size": {"low": 2, "high": 6, "step": 2}}
    stage = {"attention": att, "position": ["post_bn", "pre", "identity"][:n_pos],
             "blocks": ["all", "first", "last"][:n_blocks]}
    if fusion:
        stage["fusion"] = ["none", "sda"]
    s = parse_space({"backbone": "tiny", "stages": {"default": stage, 0: None,
                                                              1: None}})
    per = 1 + (n_se + 2 * with_eca + 3 * with_cbam_range) * n_pos * n_blocks
    assert s.size() == per * (2 if fusion else 1)
    assert len(list(s.iter_params())) == s.size()


def test_float_range_without_step_is_infinite():
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {"se": {"rd_ratio": {"low": 0.0625, "high": 0.25, "log": True}}}}}}
    s = parse_space(d)
    assert s.size() == math.inf
    with pytest.raises(ConfigError, match="infinite"):
        next(s.iter_params())
    stepped = {"backbone": "tiny", "stages": {"default": {
        "attention": {"se": {"rd_ratio": {"low": 0.0625, "high": 0.25, "step": 0.0625}}}}}}
    s2 = parse_space(stepped)
    assert s2.size() == 4 ** 3 == len(list(s2.iter_params()))


# -- Optuna ----------------------------------------------------------------------------------


def test_suggest_through_a_real_sqlite_study_stays_in_bounds(tmp_path):
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {
            "none": None,
            "se": {"rd_ratio": {"low": 0.03125, "high": 0.25, "log": True}},
            "cra": {"pool_size": {"low": 2, "high": 7}},
            "eca": {"kernel_size": [3, 5]},
        },
        "position": ["post_bn", "pre"],
        "blocks": ["all", [0], "last"],
    }}}
    s = parse_space(d)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        spec = s.suggest(trial)
        for i, stage in enumerate(spec.stages):
            p = f"stage{i}"
            att = trial.params[f"{p}.attention"]
            names = {k for k in trial.params if k.startswith(p + ".")}
            if att == "none":
                assert stage.attention is None
                assert names == {f"{p}.attention"}  # nothing else asked for
                continue
            assert stage.attention.type == att
            assert {f"{p}.position", f"{p}.blocks"} <= names
            for k in names - {f"{p}.attention", f"{p}.position", f"{p}.blocks"}:
                assert k.startswith(f"{p}.{att}.")  # only the chosen module's hparams
            if att == "se":
                assert 0.03125 <= stage.attention.params["rd_ratio"] <= 0.25
            if att == "cra":
                assert 2 <= stage.attention.params["pool_size"] <= 7
            if att == "eca":
                assert stage.attention.params["kernel_size"] in (3, 5)
        assert s.build(trial.params) == spec
        study.tell(trial, 0.5)
    # the stored parameters rebuild the same specs
    for t in study.trials:
        assert s.build(t.params).hash == s.suggest(optuna.trial.FixedTrial(t.params)).hash


def test_fixed_decisions_are_not_suggested():
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {"se": {"rd_ratio": 0.25}}, "position": "pre", "blocks": "last"}}}
    s = parse_space(d)
    assert s.size() == 1
    study = optuna.create_study()
    trial = study.ask()
    spec = s.suggest(trial)
    assert trial.params == {}
    assert spec.stages[0].attention.params["rd_ratio"] == 0.25
    assert spec.stages[0].position == "pre"


def test_build_rejects_missing_and_extra_params():
    s = space()
    params = next(s.iter_params())
    with pytest.raises(ConfigError, match="missing parameter"):
        s.build({k: v for k, v in list(params.items())[1:]})
    with pytest.raises(ConfigError, match="not used"):
        s.build({**params, "stage0.se.rd_ratio": 0.25})


def test_grid_covers_every_decision():
    s = space()
    g = s.grid()
    assert g["stage0.attention"] == ["none", "se", "eca"]
    assert g["stage0.blocks"] == ["all", "last"]
    assert g["stage2.fusion"] == ["none", "sda"]
    assert "stage0.fusion" not in g  # fixed


# -- hypothesis: round trip and bad ranges ---------------------------------------------------

ratios = st.sampled_from([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])


@st.composite
def space_dicts(draw):
    att = {"none": None}
    if draw(st.booleans()):
        lo, hi = sorted(draw(st.lists(ratios, min_size=2, max_size=2)))
        att["se"] = {"rd_ratio": {"low": lo, "high": hi, "log": draw(st.booleans())}}
    if draw(st.booleans()):
        att["eca"] = {"kernel_size": draw(st.lists(st.sampled_from(["auto", 1, 3, 5]), min_size=1,
                                              max_size=4, unique=True))}
    if draw(st.booleans()):
        lo = draw(st.integers(1, 7))
        att["cra"] = {"pool_size": {"low": lo, "high": draw(st.integers(lo, 14))}}
    stage = {
        "attention": att,
        "position": draw(st.lists(st.sampled_from(["pre", "mid", "post_bn", "post_add",
                                                   "identity"]), min_size=1, unique=True)),
        "blocks": draw(st.lists(st.sampled_from(["all", "first", "last", [0], [0, 1]]),
                                min_size=1, max_size=3, unique_by=str)),
        "conv": draw(st.sampled_from(["standard", ["standard", "rfaconv"]])),
        "fusion": draw(st.sampled_from(["none", ["none", "sda"]])),
    }
    stages = {"default": stage}
    if draw(st.booleans()):
        stages[draw(st.integers(0, 2))] = None
    return {"backbone": "tiny", "stages": stages}


@given(space_dicts())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_dict_space_dict(d):
    s = parse_space(d)
    canon = s.to_dict()
    s2 = parse_space(json.loads(json.dumps(canon)))
    assert s2.to_dict() == canon
    assert s2.hash == s.hash
    assert s2.size() == s.size()


@given(space_dicts(), st.integers(0, 10_000))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sampled_params_rebuild_inside_bounds(d, seed):
    s = parse_space(d)
    dists = s.distributions()
    params = s.sample_params(random.Random(seed))
    for k, v in params.items():
        dist = dists[k]
        if isinstance(dist, IntRange | FloatRange):
            assert dist.low <= v <= dist.high
        else:
            assert v in dist.values()
    p = s.point(params)
    assert (p.spec is None) != (p.error is None)


@given(lo=st.floats(1 / 64, 1.0), hi=st.floats(1 / 64, 1.0))
@settings(max_examples=25, deadline=None)
def test_low_above_high_is_rejected(lo, hi):
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {"se": {"rd_ratio": {"low": lo, "high": hi}}}}}}
    if lo > hi:
        with pytest.raises(ConfigError) as e:
            parse_space(d)
        assert e.value.field == "stages.default.attention.se.rd_ratio.low"
    else:
        assert parse_space(d).size() in (1, math.inf)


@given(hi=st.floats(1.0001, 100.0))
@settings(max_examples=10, deadline=None)
def test_range_outside_declaration_is_rejected(hi):
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {"se": {"rd_ratio": {"low": 0.1, "high": hi}}}}}}
    with pytest.raises(ConfigError) as e:
        parse_space(d)
    assert e.value.field.endswith("rd_ratio.high")
    assert "1.0" in str(e.value)  # the declared range is shown


# -- bad input names the field ---------------------------------------------------------------


def _att(sub):
    return {"backbone": "tiny", "stages": {"default": {"attention": sub}}}


@pytest.mark.parametrize("d, field, needle", [
    (_att({"se": {"ratio": [0.25]}}), "stages.default.attention.se.ratio", "rd_ratio"),
    (_att({"se": {"rd_ratio": []}}), "stages.default.attention.se.rd_ratio", "empty"),
    (_att({"se": {"rd_ratio": {"low": 0.0, "high": 0.5, "log": True}}}),
     "stages.default.attention.se.rd_ratio.low", "log"),
    (_att({"se": {"rd_ratio": {"low": 0.1, "high": 0.5, "spread": 1}}}),
     "stages.default.attention.se.rd_ratio.spread", "step"),
    (_att({"se": {"rd_divisor": {"low": 1, "high": 8}}}),
     "stages.default.attention.se.rd_divisor", "list of choices"),
    (_att({"se": {"rd_divisor": [1, 3]}}), "stages.default.attention.se.rd_divisor[1]", "4"),
    (_att({"cra": {"pool_size": {"low": 1, "high": 6, "step": 2}}}),
     "stages.default.attention.cra.pool_size.high", "multiple"),
    (_att({"squeeze": None}), "stages.default.attention.squeeze", "'se'"),
    (_att({"rfaconv": None}), "stages.default.attention.rfaconv", "unknown gate module"),
    (_att(["se", "se"]), "stages.default.attention[1]", "duplicate"),
    ({"backbone": "tiny", "stages": {"default": {"atention": ["se"]}}},
     "stages.default.atention", "attention"),
    ({"backbone": "tiny", "stages": {7: None}}, "stages.7", "default"),
    ({"backbone": "tiny", "stages": {"default": {"attention": "se", "position": "middle"}}},
     "stages.default.position", "post_bn"),
    ({"backbone": "tiny", "stages": {"default": {"attention": "se", "blocks": [[0, 5]]}}},
     "stages.default.blocks[0]", "out of range"),
    ({"backbone": "tiny", "stages": {"default": {"conv": ["standard", "se"]}}},
     "stages.default.conv[1]", "rfaconv"),
    ({"backbone": "resnet9000"}, "backbone", "resnet18"),
    ({"backbone": ["tiny", "resnet18"]}, "backbone", "same number of stages"),
    ({"backbone": "tiny", "backbone_args": {"depth": 3}}, "backbone_args.depth", "width"),
    ({"backbone": "tiny", "colour": 1}, "colour", "stages"),
    ({"backbone": "tiny", "constraints": {"max_flops": "lots"}}, "constraints.max_flops", "50M"),
    ({"backbone": "tiny", "constraints": {"max_macs": 1}}, "constraints.max_macs", "max_flops"),
    ({"backbone": "tiny", "tie_stages": True, "stages": {"default": {"attention": "se"},
                                                         1: None}}, "tie_stages", "same"),
])
def test_bad_input_names_the_field(d, field, needle):
    with pytest.raises(ConfigError) as e:
        parse_space(d)
    assert e.value.field == field
    assert needle in str(e.value)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: tiny\nstages:\n  default:\n    attention: {se: {rd_ratio: [2.0]}}\n")
    with pytest.raises(ConfigError) as e:
        load_space(bad)
    assert str(bad) in e.value.field and "rd_ratio" in e.value.field
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("backbone: tiny\nstages:\n  default: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_space(syntax)
    assert e.value.field.startswith(f"{syntax}:")
    assert e.value.field.rsplit(":", 1)[1].isdigit()


def test_python_tag_is_rejected_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"backbone: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="tag"):
        load_space(evil)
    assert not marker.exists()


def test_amounts():
    assert parse_amount("50M", "f") == 50e6
    assert parse_amount("1.5g", "f") == 1.5e9
    assert parse_amount("5e7", "f") == 5e7
    assert parse_amount(20_000, "f") == 20_000
    for bad in ("-1M", 0, "ten", True):
        with pytest.raises(ConfigError):
            parse_amount(bad, "f")


# -- constraints and the dry run -------------------------------------------------------------


def test_check_whole_network_and_per_stage():
    from nas_attn.cost import profile

    d = {**SMALL, "constraints": {"max_params": "1M", "stages": {"default": {"max_params": 600}}}}
    s = parse_space(d)
    plain = s.build({"stage0.attention": "none", "stage1.attention": "none",
                     "stage2.attention": "none", "stage2.fusion": "none"})
    assert s.check(plain) == []
    with_se = s.build({"stage0.attention": "none", "stage1.attention": "none",
                       "stage2.attention": "se", "stage2.se.rd_ratio": 0.25,
                       "stage2.position": "post_bn", "stage2.blocks": "all",
                       "stage2.fusion": "none"})
    added = profile(with_se, input_size=(3, 32, 32)).params - profile(plain, (3, 32, 32)).params
    # SE r=4 on 64 channels, 2 blocks: 2 * (2*64*16 + 16 + 64) = 4256 params
    assert added == 4256
    v = s.check(with_se)
    assert [(x.where, x.metric, x.value) for x in v] == [("stage2", "params", 4256.0)]
    tight = parse_space({**SMALL, "constraints": {"max_params": 1000}})
    assert [x.where for x in tight.check(plain)] == ["network"]


def test_dry_run_exact_counts_invalid_combinations():
    d = {"backbone": "tiny", "stages": {"default": {
        "attention": {"none": None, "ela": {"version": ["T", "B"]}}}, 1: None, 2: None}}
    s = parse_space(d)
    r = dry_run(s)
    assert r.mode == "exact" and r.evaluated == s.size() == 3
    # ELA-T needs 32 GroupNorm groups; stage 0 of tiny has 16 channels
    assert r.invalid == 1 and r.valid == 2
    (reason,) = r.invalid_reasons
    assert "stages[0]" in reason and "16" in reason
    assert r.flops[0] < r.flops[1] and r.params[0] < r.params[1]


def test_cli_space_json():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["space", str(ROOT / "search_spaces/quickstart.yaml"), "--json",
                   "--samples", "4"])
    assert rc == 0
    r = json.loads(out.getvalue())
    assert r["name"] == "quickstart" and r["mode"] == "sampled" and r["evaluated"] == 4
    assert r["size"] == load_space(ROOT / "search_spaces/quickstart.yaml").size()
    assert r["flops"]["min"] <= r["flops"]["max"]


def test_cli_bad_file_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: tiny\nstages: {default: {attention: [nope]}}\n")
    before = sorted(tmp_path.iterdir())
    assert main(["space", str(bad), "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "nope" in cap.err
    assert sorted(tmp_path.iterdir()) == before
