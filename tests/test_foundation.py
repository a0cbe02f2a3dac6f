"""The shared building blocks: registry, hyperparameter declarations, safe YAML, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nas_attn.errors import ConfigError, TrialError
from nas_attn.hparams import HParam, validate_hparams
from nas_attn.registry import Registry
from nas_attn.yamlio import load_yaml, loads_yaml


def test_registry_duplicates_and_unknown_names():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a", 2)
    with pytest.raises(ConfigError) as e:
        reg.get("b", "stages[0].type")
    assert e.value.field == "stages[0].type"
    assert e.value.value == "b"
    assert e.value.choices == ["a"]
    assert "valid: 'a'" in str(e.value)


RATIO = HParam("rd_ratio", "float", default=0.0625, low=1 / 64, high=1.0, log=True)
K = HParam("k", "int", default=3, low=1, high=9, odd=True)
CAT = HParam("version", "categorical", default="B", choices=("T", "B", "S", "L"))
SUB = HParam("pooling", "subset", default=["avg", "max"], choices=("avg", "max", "entropy"))
FLAG = HParam("flag", "bool", default=True)


def test_defaults_filled_and_unknown_rejected():
    out = validate_hparams((RATIO, K), {"k": 5}, "se")
    assert out == {"rd_ratio": 0.0625, "k": 5}
    with pytest.raises(ConfigError) as e:
        validate_hparams((RATIO, K), {"rd_ration": 0.5}, "stages[1].attention")
    assert e.value.field == "stages[1].attention.rd_ration"
    assert e.value.choices == ["rd_ratio", "k"]


@pytest.mark.parametrize(
    ("decl", "bad"),
    [(RATIO, 2.0), (RATIO, 0.0), (RATIO, float("nan")), (RATIO, "x"), (K, 4), (K, 11), (K, 2.5),
     (K, True), (CAT, "X"), (SUB, []), (SUB, ["avg", "avg"]), (SUB, ["mean"]), (SUB, "avg"),
     (FLAG, 1)],
)
def test_bad_values_name_field_and_choices(decl, bad):
    with pytest.raises(ConfigError) as e:
        decl.validate(bad, f"m.{decl.name}")
    assert e.value.field == f"m.{decl.name}"
    assert e.value.choices is not None


def test_subset_is_normalised_to_declared_order():
    assert SUB.validate(["entropy", "avg"], "p") == ["avg", "entropy"]


def test_declaration_with_invalid_default_is_refused():
    with pytest.raises(ConfigError):
        HParam("k", "int", default=4, low=1, high=9, odd=True)


@given(st.floats(min_value=1 / 64, max_value=1.0))
def test_in_range_floats_accepted(v):
    assert math.isclose(RATIO.validate(v, "r"), v)


@given(st.integers(min_value=-100, max_value=100))
def test_int_validation_matches_declaration(v):
    ok = 1 <= v <= 9 and v % 2 == 1
    if ok:
        assert K.validate(v, "k") == v
    else:
        with pytest.raises(ConfigError):
            K.validate(v, "k")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    assert str(p) in e.value.field
    assert e.value.field.rsplit(":", 1)[1].isdigit()


def test_yaml_python_tag_rejected_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f"x: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError, match="unsupported YAML tag"):
        loads_yaml(text, "evil.yaml")
    assert not marker.exists()


def test_missing_file_and_json(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "nope.yaml")
    p = tmp_path / "s.json"
    p.write_text('{"a": [1, 2]}')
    assert load_yaml(p) == {"a": [1, 2]}
    p.write_text('{"a": ')
    with pytest.raises(ConfigError, match="JSON syntax error"):
        load_yaml(p)


def test_trial_error_reasons_are_closed_set():
    assert TrialError("oom").reason == "oom"
    with pytest.raises(ValueError, match="valid"):
        TrialError("bogus")
