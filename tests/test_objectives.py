"""nas_attn.objectives: the one definition of the objectives, the front of a run, the
hypervolume reference point and the finite-number check (pure, no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nas_attn.errors import ConfigError
from nas_attn.objectives import (
    DEFAULT_OBJECTIVES,
    OBJECTIVES,
    REFERENCE_ATTR,
    Entry,
    Objective,
    candidates,
    entries_of_frame,
    is_finite_number,
    normalized_hypervolume,
    objectives_of,
    pareto_front,
    recorded_reference,
    reference_point,
    study_reference,
    summarize_front,
)

DIRS = ["maximize", "minimize"]
OBJS = DEFAULT_OBJECTIVES


def test_one_objective_class_everywhere():
    from nas_attn.search import outcome, setup, study
    from nas_attn.viz import data

    assert study.Objective is outcome.Objective is setup.Objective is data.Objective is Objective
    assert study.OBJECTIVES is OBJECTIVES
    assert [o.is_cost for o in OBJS] == [False, True]
    assert objectives_of([["val_accuracy", "maximize"], {"name": "flops",
                                                          "direction": "minimize"}]) == OBJS
    with pytest.raises(ConfigError, match="direction"):
        Objective("flops", "smallest")


@pytest.mark.parametrize("value, ok", [
    (1, True), (0.5, True), (10**400, True), (np.float32(2.0), True), (np.int64(3), True),
    (True, False), (np.bool_(True), False), (math.nan, False), (math.inf, False),
    (np.float64("nan"), False), ("1", False), (None, False),
])
def test_is_finite_number(value, ok):
    assert is_finite_number(value) is ok


def _e(number, values, state="COMPLETE", spec_hash=None, reused=False, finished=""):
    return Entry(number, state, values, spec_hash, reused, finished)


def test_front_one_row_per_architecture_complete_and_finite_only():
    entries = [
        _e(0, (0.5, 50.0), spec_hash="a"),
        _e(1, (0.8, 80.0), spec_hash="b"),
        _e(2, (0.8, 80.0), spec_hash="b", reused=True),  # reused copy of 1
        _e(3, (0.8, 80.0), spec_hash="b"),  # the same architecture trained again
        _e(4, (0.4, 90.0), spec_hash="c"),  # dominated
        _e(5, None, state="PRUNED", spec_hash="d"),
        _e(6, (0.99, 1.0), state="PRUNED", spec_hash="e"),  # values never count when PRUNED
        _e(7, (math.nan, 1.0), spec_hash="f"),
        _e(8, (0.5, 50.0), spec_hash="g"),  # another architecture, equal values: on the front
    ]
    assert [e.number for e in candidates(entries, 2)] == [0, 1, 4, 8]
    assert [e.number for e in pareto_front(entries, DIRS)] == [0, 1, 8]
    assert pareto_front([], DIRS) == []


def test_normalised_hypervolume_and_a_point_beyond_the_reference():
    pts = [(0.5, 50.0), (0.8, 80.0), (0.4, 90.0)]  # the last one is dominated
    # dominated area: 0.5 x (100-50) + (0.8-0.5) x (100-80) = 25 + 6 = 31 of a 1 x 100 box
    assert normalized_hypervolume(pts, DIRS, [0.0, 100.0]) == pytest.approx(0.31)
    assert normalized_hypervolume([(0.9, 150.0)], DIRS, [0.0, 100.0]) == 0.0
    assert normalized_hypervolume([], DIRS, [0.0, 100.0]) == 0.0
    s = summarize_front([_e(0, pts[0], spec_hash="a"), _e(1, pts[1], spec_hash="b"),
                         _e(2, pts[2], spec_hash="c")], OBJS, (0.0, 100.0))
    assert s.numbers == (0, 1) and s.hypervolume == pytest.approx(0.31)
    assert summarize_front([], OBJS, None).hypervolume is None


def test_reference_point_limits_else_twice_the_first_complete_trial_to_finish():
    assert reference_point(OBJS, {"flops": 5e6}, []) == (0.0, 5e6)
    assert reference_point(OBJS, {}, []) is None
    entries = [_e(0, (0.6, 30.0), finished="2026-01-01 10:00:05"),
               _e(1, (0.5, 10.0), finished="2026-01-01 10:00:01"),  # finished first
               _e(2, (0.9, 99.0), state="PRUNED", finished="2026-01-01 10:00:00")]
    assert reference_point(OBJS, {}, entries) == (0.0, 20.0)
    # without completion times: the lowest-numbered COMPLETE trial
    assert reference_point(OBJS, {}, [_e(3, (0.5, 7.0)), _e(1, (0.6, 4.0))]) == (0.0, 8.0)


class _Study:
    """The part of an Optuna study ``study_reference`` uses."""

    def __init__(self, trials, attrs=None):
        self.trials, self.user_attrs = trials, dict(attrs or {})

    def get_trials(self, deepcopy=False):
        return self.trials

    def set_user_attr(self, k, v):
        self.user_attrs[k] = v


def test_study_reference_is_recorded_once_and_then_read_back():
    import optuna

    def trial(number, values):
        return optuna.trial.create_trial(values=list(values), user_attrs={"spec_hash": str(number)})

    study = _Study([])
    assert study_reference(study, OBJS) is None and REFERENCE_ATTR not in study.user_attrs
    study.trials.append(trial(0, (0.5, 10.0)))
    assert study_reference(study, OBJS) == (0.0, 20.0)
    assert study.user_attrs[REFERENCE_ATTR] == {"val_accuracy": 0.0, "flops": 20.0}
    study.trials.append(trial(1, (0.9, 100.0)))  # later trials never move it
    assert study_reference(study, OBJS) == (0.0, 20.0)
    assert recorded_reference({REFERENCE_ATTR: {"flops": 1.0}}, OBJS) is None  # incomplete
    unrecorded = _Study([trial(0, (0.5, 10.0))])
    assert study_reference(unrecorded, OBJS, record=False) == (0.0, 20.0)
    assert REFERENCE_ATTR not in unrecorded.user_attrs


def test_entries_of_a_trials_table_read_back_from_csv(tmp_path):
    df = pd.DataFrame([
        {"number": 0, "state": "COMPLETE", "val_accuracy": 0.5, "flops": 10.0,
         "spec_hash": "a", "reused": None, "datetime_complete": "2026-01-01 10:00:00"},
        {"number": 1, "state": "COMPLETE", "val_accuracy": 0.5, "flops": 10.0,
         "spec_hash": "a", "reused": True, "datetime_complete": "2026-01-01 10:00:01"},
        {"number": 2, "state": "FAIL", "val_accuracy": None, "flops": 12.0,
         "spec_hash": "b", "reused": None, "datetime_complete": None},
    ])
    df.to_csv(tmp_path / "t.csv", index=False)
    for frame in (df, pd.read_csv(tmp_path / "t.csv")):
        entries = entries_of_frame(frame, ["val_accuracy", "flops"])
        assert [(e.number, e.reused, e.spec_hash) for e in entries] == [
            (0, False, "a"), (1, True, "a"), (2, False, "b")]
        assert [e.number for e in pareto_front(entries, DIRS)] == [0]
