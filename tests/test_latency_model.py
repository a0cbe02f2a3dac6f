"""The latency table's correction models: features from cells, weighted least squares, the
choice by leave-one-out cross-validation, the stored form (and a legacy one), and refusals of an
unknown version, model or term. Hand-made numbers only: nothing here times anything."""

from __future__ import annotations

import json
import random

import pytest
from test_latency import _spec, _table

from nas_attn.cost.latency_model import (
    MODELS,
    check_correction,
    choose,
    cross_validate,
    features,
    fit,
    parts_of,
    predict,
)
from nas_attn.cost.latency_table import load_table
from nas_attn.errors import ConfigError


def test_features_sum_parts_and_count_calls():
    descs = [{"kind": "stem"}, {"kind": "block", "stage": 0, "holds": {"gates": {}}},
             {"kind": "block", "stage": 1, "holds": {"gates": {"post_bn": {"type": "se"},
                                                               "mid": {"type": "eca"}}}},
             {"kind": "stage", "stage": 2, "holds": {"fusion": {"type": "sda"}}},
             {"kind": "head"}]
    f = features(descs, [1.0, 2.0, 3.0, 4.0, 0.5], overhead_ms=0.1)
    assert f == pytest.approx({"additive": 10.5 - 4 * 0.1, "cells": 5, "gates": 3,
                               "stem": 1.0, "stage0": 2.0, "stage1": 3.0, "stage2": 4.0,
                               "head": 0.5})
    assert parts_of([f]) == ["stem", "stage0", "stage1", "stage2", "head"]


def _rows(n: int, seed: int = 0, noise: float = 0.0):
    """Networks whose time is 0.2 + 1.5 * stage0 + 0.5 * stage1 + 0.05 per gate."""
    rng = random.Random(seed)
    rows, measured = [], []
    for _ in range(n):
        s0, s1, gates = rng.uniform(0.2, 2), rng.uniform(0.2, 2), rng.randint(0, 6)
        rows.append({"additive": s0 + s1, "stage0": s0, "stage1": s1, "cells": 4.0,
                     "gates": float(gates)})
        y = 0.2 + 1.5 * s0 + 0.5 * s1 + 0.05 * gates
        measured.append(y * (1 + rng.uniform(-noise, noise)))
    return rows, measured


def test_weighted_least_squares_recovers_the_model_it_was_made_from():
    rows, measured = _rows(12)
    corr = fit("stages+calls", rows, measured)
    assert corr["coef"]["const"] + 4 * corr["coef"]["cells"] == pytest.approx(0.2, abs=1e-6)
    assert corr["coef"]["stage0"] == pytest.approx(1.5) and corr["coef"]["gates"] == \
        pytest.approx(0.05)
    assert all(predict(corr, r) == pytest.approx(m) for r, m in zip(rows, measured, strict=True))
    assert predict(fit("additive", rows, measured), rows[0]) == rows[0]["additive"]


def test_cross_validation_picks_the_model_that_generalises():
    rows, measured = _rows(20, noise=0.01)
    chosen = choose(rows, measured)
    assert chosen["model"] == "stages+calls"
    cv = {m: c["mean_abs_error"] for m, c in chosen["cv"].items()}
    assert cv["stages+calls"] < 0.02 < min(cv["affine"], cv["additive"])
    # networks that really are additive: nothing beats the model that fits nothing
    plain = [{**r, "additive": m} for r, m in zip(rows, measured, strict=True)]
    assert choose(plain, measured)["model"] == "additive"
    # too few networks for the larger models: they are not candidates
    assert set(choose(rows[:4], measured[:4])["cv"]) == {"additive", "affine"}
    assert choose([], [])["model"] == "additive"
    loo = cross_validate("affine", rows, measured)
    assert loo["specs"] == 20 and 0 <= loo["within_10pct"] <= 1


def test_a_legacy_correction_reads_as_affine_and_bad_ones_are_refused(tmp_path):
    spec, table = _table()
    legacy = {**table.to_dict(), "correction": {"a": 0.5, "b": 2.0}}
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    assert load_table(tmp_path / "old.json").predict(spec) == pytest.approx(table.predict(spec))
    good = {"version": 1, "model": "affine", "coef": {"const": 0.0, "additive": 1.0}}
    for bad, field in (({**good, "version": 9}, "correction.version"),
                       ({**good, "model": "cubic"}, "correction.model"),
                       ({**good, "coef": {"wattage": 1.0}}, "correction.coef.wattage"),
                       ({**good, "coef": {"const": "x"}}, "correction.coef.const"),
                       ({"a": "x"}, "correction.a"), (None, "correction")):
        with pytest.raises(ConfigError, match=field) as e:
            check_correction(bad, "t.json")
        if field == "correction.model":
            assert all(m in str(e.value) for m in MODELS)


def test_a_table_predicts_with_its_stored_model():
    spec, table = _table(stem=3.0, head=2.0)
    corr = {"version": 1, "model": "stages", "coef": {"const": 1.0, "stem": 2.0, "stage1": 0.5}}
    staged = table.__class__(**{**table.__dict__, "correction": corr})
    assert staged.predict(spec) == pytest.approx(1.0 + 2.0 * 3.0 + 0.5 * 2.0)
    assert staged.predict(spec) == staged.predict(_spec())  # a fixed formula: deterministic


def test_validation_refits_every_model_the_calibration_supports():
    from nas_attn.latency.validate import model_errors

    rows, measured = _rows(14)
    _, table = _table()
    calib = [{"features": r, "measured_ms": m} for r, m in zip(rows[:10], measured[:10],
                                                               strict=True)]
    table = table.__class__(**{**table.__dict__, "correction": {
        **table.correction, "calibration": calib}})
    held_out = [{"features": r, "measured_ms": m} for r, m in zip(rows[10:], measured[10:],
                                                                  strict=True)]
    out = model_errors(table, held_out)
    assert set(out) == set(MODELS)  # 10 networks support even the 5 coefficients of the largest
    assert out["stages+calls"]["max_abs_error"] < 1e-6 < out["additive"]["max_abs_error"]
    assert out["stages+calls"]["specs"] == 4
    assert set(model_errors(table.__class__(**{**table.__dict__, "correction": {
        **table.correction, "calibration": calib[:3]}}), held_out)) == {"additive"}
    assert model_errors(_table()[1], held_out) == {}  # no calibration rows: nothing to refit
