"""ParetoHalvingScheduler: unit tests on real ray.tune Trial objects, and one real Tuner run."""

from __future__ import annotations

import os
import sys

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from nas_attn.search.pruning import HalvingConfig
from nas_attn.search.ray_scheduler import ParetoHalvingScheduler

CONT, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _trial(tid: str) -> Trial:
    return Trial("__fake", stub=True, trial_id=tid)  # a real Trial, no cluster needed


def _res(epoch, acc, flops, **extra):
    return {"training_iteration": epoch, "val_accuracy": acc, "flops": flops, **extra}


def test_stops_dominated_trial_at_rung_and_front_runs_to_max():
    sched = ParetoHalvingScheduler(HalvingConfig(max_epochs=3))  # rung 1 only
    g1, g2, bad = _trial("g1"), _trial("g2"), _trial("bad")
    for t in (g1, g2, bad):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, g1, _res(1, 0.9, 5.0)) == CONT
    assert sched.on_trial_result(None, g2, _res(1, 0.7, 1.0)) == CONT
    assert sched.on_trial_result(None, bad, _res(1, 0.5, 6.0)) == STOP
    sched.on_trial_complete(None, bad, _res(1, 0.5, 6.0))
    assert sched.on_trial_result(None, g1, _res(2, 0.92, 5.0)) == CONT
    # full budget: the trial ends by itself (its trainable still saves its weights) ...
    assert sched.on_trial_result(None, g1, _res(3, 0.93, 5.0)) == CONT
    # ... and a trainable that reports beyond the budget is cut
    assert sched.on_trial_result(None, g1, _res(4, 0.94, 5.0)) == STOP
    assert sched.stopped == {"bad": 1}
    assert "num_stopped=1" in sched.debug_string()
    assert sched.choose_trial_to_run(_FakeController([g2])) is g2  # FIFO base class


@pytest.mark.parametrize("stop_dominated", [False, True])
def test_stop_dominated_reaches_the_scheduler(stop_dominated):
    sched = ParetoHalvingScheduler(HalvingConfig(max_epochs=3, stop_dominated=stop_dominated))
    first, dominated = _trial("first"), _trial("dominated")
    for t in (first, dominated):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, first, _res(1, 0.9, 5.0)) == CONT
    # the second arrival is dominated by the first; 2 < eta trials keep the quantile quiet
    expected = STOP if stop_dominated else CONT
    assert sched.on_trial_result(None, dominated, _res(1, 0.8, 6.0)) == expected


def test_a_promoted_trial_passes_the_rungs_it_resumed_after():
    sched = ParetoHalvingScheduler(HalvingConfig(max_epochs=9, min_trials_at_rung=1))  # 1, 3
    good, bad = _trial("good"), _trial("bad")
    assert sched.on_trial_result(None, good, _res(1, 0.9, 1.0)) == CONT
    assert sched.on_trial_result(None, bad, _res(1, 0.2, 2.0)) == STOP
    promoted = Trial("__fake", stub=True, trial_id="promoted", config={"resume_epoch": 1})
    # epoch 2 falls under rung 1, which the stopped trial already had decided: not again
    assert sched.on_trial_result(None, promoted, _res(2, 0.1, 2.0)) == CONT
    assert [row[0] for row in sched.halving.rung_table[1]] == ["good", "bad"]
    assert sched.on_trial_result(None, good, _res(3, 0.95, 1.0)) == CONT
    assert sched.on_trial_result(None, promoted, _res(3, 0.3, 2.0)) == STOP  # rung 3 decides


class _FakeController:
    """Only ``get_trials`` is used by FIFOScheduler.choose_trial_to_run."""

    def __init__(self, trials):
        self._trials = trials

    def get_trials(self):
        return self._trials


def test_custom_keys_missing_keys_and_non_finite():
    sched = ParetoHalvingScheduler(
        HalvingConfig(max_epochs=9, min_trials_at_rung=1),
        metric="acc",
        cost_metric="params",
        time_attr="epoch",
    )
    a, b, c = _trial("a"), _trial("b"), _trial("c")
    assert sched.on_trial_result(None, a, {"epoch": 1, "acc": 0.9, "params": 10}) == CONT
    assert sched.on_trial_result(None, b, {"epoch": 1, "acc": 0.5}) == CONT  # no cost: skip
    assert sched.on_trial_result(None, b, {"epoch": 1, "acc": 0.4, "params": 12}) == STOP
    assert sched.on_trial_result(None, c, {"epoch": 1, "acc": float("nan"), "params": 1}) == STOP
    assert sched.nonfinite == {"c"}
    assert [row[0] for row in sched.halving.rung_table[1]] == ["a", "b"]


def test_set_search_properties():
    sched = ParetoHalvingScheduler(HalvingConfig(max_epochs=9))
    assert sched.set_search_properties(None, None)
    assert sched.set_search_properties("val_accuracy", "max")
    assert not sched.set_search_properties("val_accuracy", "min")
    assert not sched.set_search_properties("loss", "min")
    assert sched.metric == "val_accuracy"


def test_save_restore_round_trip(tmp_path):
    cfg = HalvingConfig(max_epochs=9)
    sched = ParetoHalvingScheduler(cfg)
    for tid, acc, flops in (("g1", 0.9, 5.0), ("g2", 0.7, 1.0), ("g3", 0.8, 3.0)):
        sched.on_trial_result(None, _trial(tid), _res(1, acc, flops))
    path = str(tmp_path / "sched.json")
    sched.save(path)
    fresh = ParetoHalvingScheduler(cfg)
    fresh.restore(path)
    assert fresh.halving.to_dict() == sched.halving.to_dict()
    assert fresh.on_trial_result(None, _trial("bad"), _res(1, 0.5, 6.0)) == STOP


# ---------------------------------------------------------------- a real Tuner run

# Front first, then trials each dominated by a front trial. Run one at a time so the arrival
# order at the rung is the grid order; eta=3 keeps the first two (n < eta), then each
# dominated arrival ranks below the two front trials (top ceil(n/3) <= 2).
_TRIALS = [
    {"name": "front_a", "q": 0.9, "flops": 5.0},
    {"name": "front_b", "q": 0.7, "flops": 1.0},
    {"name": "dom_1", "q": 0.5, "flops": 6.0},
    {"name": "dom_2", "q": 0.6, "flops": 5.5},
    {"name": "dom_3", "q": 0.3, "flops": 2.0},
]


def _trainable(config):
    from ray import tune

    for epoch in range(1, 4):
        acc = config["trial"]["q"] * (1.0 - 0.5**epoch)
        tune.report({"epoch": epoch, "val_accuracy": acc, "flops": config["trial"]["flops"]})


@pytest.mark.ray
@pytest.mark.slow
def test_real_tuner_run_stops_dominated_trials(tmp_path):
    import ray
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sched = ParetoHalvingScheduler(HalvingConfig(max_epochs=3, eta=3))  # rung at epoch 1
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        tuner = tune.Tuner(
            _trainable,
            param_space={"trial": tune.grid_search(_TRIALS)},
            tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="pareto", verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert not grid.errors
    epochs = {r.config["trial"]["name"]: r.metrics["epoch"] for r in grid}
    assert epochs == {"front_a": 3, "front_b": 3, "dom_1": 1, "dom_2": 1, "dom_3": 1}
    # the Tuner drives this very object: it knows which trials it pruned, and where
    names = {r.metrics["trial_id"]: r.config["trial"]["name"] for r in grid}
    assert {names[tid]: rung for tid, rung in sched.stopped.items()} == {
        "dom_1": 1,
        "dom_2": 1,
        "dom_3": 1,
    }
