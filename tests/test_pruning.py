"""The Pareto successive-halving decision on hand-built rung tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nas_attn.errors import ConfigError
from nas_attn.search.pruning import HalvingConfig, ParetoHalving, decide, rank_rung

# ---------------------------------------------------------------- config


def test_rungs():
    assert HalvingConfig(max_epochs=27).rungs() == [1, 3, 9]
    assert HalvingConfig(max_epochs=9).rungs() == [1, 3]
    assert HalvingConfig(max_epochs=16, eta=2, grace_epochs=2).rungs() == [2, 4, 8]
    assert HalvingConfig(max_epochs=1).rungs() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"eta": 1}, "early_stopping.eta"),
        ({"eta": 2.5}, "early_stopping.eta"),
        ({"eta": True}, "early_stopping.eta"),
        ({"grace_epochs": 0}, "early_stopping.grace_epochs"),
        ({"grace_epochs": 12}, "early_stopping.grace_epochs"),
        ({"max_epochs": 0}, "early_stopping.max_epochs"),
        ({"tie_break": "random"}, "early_stopping.tie_break"),
        ({"min_trials_at_rung": 0}, "early_stopping.min_trials_at_rung"),
        ({"enabled": "yes"}, "early_stopping.enabled"),
        ({"stop_dominated": 1}, "early_stopping.stop_dominated"),
    ],
)
def test_config_validation(kwargs, field):
    args = {"max_epochs": 9, **kwargs}
    with pytest.raises(ConfigError) as err:
        HalvingConfig(**args)
    assert err.value.field == field


def test_config_lists_choices_and_round_trips():
    with pytest.raises(ConfigError) as err:
        HalvingConfig(max_epochs=9, tie_break="random")
    assert err.value.choices == ["crowding", "hypervolume"]
    cfg = HalvingConfig(max_epochs=9, eta=2, tie_break="hypervolume", min_trials_at_rung=4)
    assert HalvingConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown setting"):
        HalvingConfig.from_dict({"max_epochs": 9, "etaa": 3})


# ---------------------------------------------------------------- decide


def test_dominated_trial_stopped_front_trial_kept():
    rows = [("a", 0.9, 1.0), ("b", 0.8, 2.0), ("c", 0.7, 3.0)]
    assert decide(rows, "a", eta=3)
    assert not decide(rows, "b", eta=3)
    assert not decide(rows, "c", eta=3)


def test_directions_matter():
    rows = [("a", 0.9, 3.0), ("b", 0.8, 2.0), ("c", 0.7, 1.0)]
    # with FLOPs minimised all three are on the front; accuracy breaks the boundary tie
    assert rank_rung(rows)[0] == "a"
    # minimising both: c dominates everyone
    assert decide(rows, "c", eta=3, directions=("minimize", "minimize"))
    assert not decide(rows, "a", eta=3, directions=("minimize", "minimize"))


def _nine_rows():
    # front: (0.9, 9) (0.7, 3) (0.5, 1); second front: (0.8, 10) (0.6, 5) (0.4, 2); rest worse
    vals = [
        (0.9, 9),
        (0.8, 10),
        (0.7, 3),
        (0.6, 5),
        (0.5, 1),
        (0.4, 2),
        (0.3, 8),
        (0.2, 6),
        (0.1, 11),
    ]
    return [(f"t{i}", a, f) for i, (a, f) in enumerate(vals)]


def test_nine_trials_eta3_batch_keeps_exactly_three():
    rows = _nine_rows()
    kept = [tid for tid, *_ in rows if decide(rows, tid, eta=3)]
    assert sorted(kept) == ["t0", "t2", "t4"]  # the whole first front


def test_batch_keeps_ceil_n_over_eta_on_random_tables():
    rng = np.random.default_rng(0)
    for n in range(1, 25):
        for eta in (2, 3, 4):
            rows = [(i, float(a), float(f)) for i, (a, f) in enumerate(rng.random((n, 2)))]
            for tie_break in ("crowding", "hypervolume"):
                kept = [
                    tid
                    for tid, *_ in rows
                    if decide(rows, tid, eta=eta, tie_break=tie_break, min_trials=1)
                ]
                assert len(kept) == math.ceil(n / eta)
                # everything kept ranks at least as well (front index) as anything stopped
                assert set(kept) == set(rank_rung(rows, tie_break=tie_break)[: len(kept)])


def test_ceil_rounding_and_front_larger_than_quota():
    rows = _nine_rows()[:4]  # fronts: {t0, t2}, {t1, t3}; ceil(4/3) = 2
    assert [t for t, *_ in rows if decide(rows, t, eta=3)] == ["t0", "t2"]
    rows = _nine_rows()[:5]  # first front {t0, t2, t4}; ceil(5/3) = 2: the two boundary points
    # t0 (0.9, 9) and t4 (0.5, 1) are the boundaries (infinite crowding); t2 is interior
    assert [t for t, *_ in rows if decide(rows, t, eta=3)] == ["t0", "t4"]


def test_fewer_than_eta_trials_all_continue():
    rows = [("good", 0.9, 1.0), ("bad", 0.1, 9.0)]
    assert decide(rows, "bad", eta=3)  # n=2 < eta: not enough trials to split a top third
    assert not decide(rows, "bad", eta=3, min_trials=1)  # ASHA-strict: top ceil(2/3)=1


def test_stop_dominated_stops_a_dominated_trial_inside_the_quota():
    # fronts {a}, {b}, {c}, {d}; ceil(4/3) = 2 keeps b, though a dominates it
    rows = [("a", 0.9, 1.0), ("b", 0.8, 2.0), ("c", 0.7, 3.0), ("d", 0.6, 4.0)]
    assert [t for t, *_ in rows if decide(rows, t, eta=3)] == ["a", "b"]
    assert [t for t, *_ in rows if decide(rows, t, eta=3, stop_dominated=True)] == ["a"]
    # with fewer than min_trials the quantile lets everything go on, domination does not
    assert decide(rows[:2], "b", eta=3)
    assert not decide(rows[:2], "b", eta=3, stop_dominated=True)
    # equal on both objectives is not domination; better on one and worse on the other neither
    same = [("a", 0.9, 1.0), ("a2", 0.9, 1.0), ("cheap", 0.5, 0.5)]
    # (min_trials 4: the quantile lets all three go on, so only domination could stop one)
    assert all(decide(same, t, eta=3, min_trials=4, stop_dominated=True) for t, *_ in same)


def test_stop_dominated_keeps_the_non_dominated_part_of_the_quota():
    rng = np.random.default_rng(1)
    for n in range(1, 20):
        rows = [(i, float(a), float(f)) for i, (a, f) in enumerate(rng.random((n, 2)))]
        quota = set(rank_rung(rows)[: math.ceil(n / 3)])
        front = {i for i, a, f in rows
                 if not any(b >= a and g <= f and (b > a or g < f) for _, b, g in rows)}
        kept = {t for t, *_ in rows if decide(rows, t, eta=3, min_trials=1, stop_dominated=True)}
        assert kept == quota & front
        assert kept  # the best-ranked trial is always non-dominated


def test_stop_dominated_through_the_stateful_rule():
    h = ParetoHalving(HalvingConfig(max_epochs=9, stop_dominated=True))  # rungs 1, 3
    assert h.report("a", 1, 0.5, 1.0) == "continue"
    assert h.report("b", 1, 0.4, 2.0) == "stop"  # second arrival, dominated by a
    assert h.report("c", 1, 0.6, 2.0) == "continue"  # more accurate, dearer: not dominated
    assert ParetoHalving.from_dict(json.loads(json.dumps(h.to_dict()))).config.stop_dominated


def test_tie_breaks_crowding_vs_hypervolume():
    rows = [("a", 0.9, 10.0), ("b", 0.8, 5.0), ("c", 0.5, 1.0)]  # one front of three
    # crowding: a and c are boundaries (inf); the higher accuracy wins the remaining tie
    assert rank_rung(rows, tie_break="crowding") == ["a", "c", "b"]
    assert [t for t, *_ in rows if decide(rows, t, eta=3)] == ["a"]
    # hypervolume contribution (reference: nadir + 10 % of the range):
    # a: 0.1 * 0.9 = 0.09, b: 0.3 * 5 = 1.5, c: 0.04 * 4 = 0.16
    assert rank_rung(rows, tie_break="hypervolume") == ["b", "c", "a"]
    assert [t for t, *_ in rows if decide(rows, t, eta=3, tie_break="hypervolume")] == ["b"]


def test_identical_trials_tie_goes_to_earlier_arrival():
    rows = [(f"t{i}", 0.5, 2.0) for i in range(9)]
    assert [t for t, *_ in rows if decide(rows, t, eta=3)] == ["t0", "t1", "t2"]


def test_decide_rejects_bad_tables():
    with pytest.raises(ConfigError, match="candidate"):
        decide([("a", 0.5, 1.0)], "z", eta=3)
    with pytest.raises(ConfigError, match="twice"):
        decide([("a", 0.5, 1.0), ("a", 0.4, 1.0)], "a", eta=3)
    with pytest.raises(ValueError, match="row 1"):
        decide([("a", 0.5, 1.0), ("b", float("nan"), 1.0)], "a", eta=3)
    with pytest.raises(ConfigError):
        decide([("a", 0.5, 1.0)], "a", eta=1)


# ---------------------------------------------------------------- ParetoHalving


def _run(order, values, cfg):
    halving = ParetoHalving(cfg)
    return {tid: halving.report(tid, 1, *values[tid]) for tid in order}, halving


def test_asynchronous_arrivals_are_order_dependent():
    values = {"g1": (0.9, 5.0), "g2": (0.7, 1.0), "g3": (0.8, 3.0), "bad": (0.5, 6.0)}
    cfg = HalvingConfig(max_epochs=9)
    # the dominated trial arriving first is let through (the table is still small) ...
    first, _ = _run(["bad", "g1", "g2", "g3"], values, cfg)
    assert first["bad"] == "continue"
    # ... arriving last it meets the three trials that dominate it and is stopped
    last, halving = _run(["g1", "g2", "g3", "bad"], values, cfg)
    assert last == {"g1": "continue", "g2": "continue", "g3": "stop", "bad": "stop"}
    assert halving.stopped == {"g3": 1, "bad": 1}
    # decisions are never revised: g1 and g2 stay decided even as the table grows
    assert halving.decisions[("g1", 1)] == "continue"


def test_continued_trial_can_be_stopped_at_the_next_rung():
    values = {"g1": (0.9, 5.0), "bad": (0.5, 6.0)}
    cfg = HalvingConfig(max_epochs=9, eta=2)  # rungs 1, 2, 4, 8
    first, halving = _run(["bad", "g1"], values, cfg)
    assert first == {"bad": "continue", "g1": "continue"}  # bad was alone when it arrived
    assert halving.report("g1", 2, 0.95, 5.0) == "continue"
    assert halving.report("bad", 2, 0.55, 6.0) == "stop"
    assert halving.stopped == {"bad": 2}


def test_report_bookkeeping():
    halving = ParetoHalving(HalvingConfig(max_epochs=9, min_trials_at_rung=1))
    assert halving.report("a", 1, 0.9, 1.0) == "continue"
    assert halving.report("b", 1, 0.5, 2.0) == "stop"
    assert halving.report("b", 2, 0.99, 0.1) == "stop"  # stopped stays stopped
    assert halving.report("a", 1, 0.1, 9.0) == "continue"  # replay: same answer
    assert halving.report("a", 2, 0.1, 9.0) == "continue"  # between rungs
    assert [row[0] for row in halving.rung_table[1]] == ["a", "b"]
    # a sparse reporter that skips rung 3 is decided at its epoch's highest rung
    assert halving.report("c", 5, 0.95, 1.0) == "continue"
    assert [row[0] for row in halving.rung_table[3]] == ["c"]
    # a first report beyond the last rung lands at the last rung (3), where c dominates it
    assert halving.report("d", 9, 0.1, 9.0) == "stop"
    assert halving.stopped["d"] == 3


def test_disabled_never_stops():
    halving = ParetoHalving(HalvingConfig(max_epochs=9, enabled=False, min_trials_at_rung=1))
    assert halving.report("a", 1, 0.9, 1.0) == "continue"
    assert halving.report("b", 1, 0.1, 9.0) == "continue"
    assert halving.rung_table == {1: [], 3: []}


def test_state_round_trips_through_json():
    cfg = HalvingConfig(max_epochs=9)
    values = {"g1": (0.9, 5.0), "g2": (0.7, 1.0), "g3": (0.8, 3.0), "bad": (0.5, 6.0)}
    _, halving = _run(["g1", "g2", "g3"], values, cfg)
    restored = ParetoHalving.from_dict(json.loads(json.dumps(halving.to_dict())))
    assert restored.to_dict() == halving.to_dict()
    # the restored table still stops the dominated late arrival, and remembers g3
    assert restored.report("bad", 1, *values["bad"]) == "stop"
    assert restored.report("g3", 2, 0.99, 0.1) == "stop"
    with pytest.raises(ConfigError):
        ParetoHalving.from_dict({**halving.to_dict(), "version": 99})


def test_report_rejects_non_finite_values():
    halving = ParetoHalving(HalvingConfig(max_epochs=9))
    with pytest.raises(ValueError):
        halving.report("a", 1, float("nan"), 1.0)
    with pytest.raises(ValueError):
        halving.report("a", 1, 0.5, float("inf"))
    assert halving.rung_table[1] == []
