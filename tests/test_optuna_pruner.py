"""MOPruner in a real multi-objective Optuna study (SQLite storage), plain study.optimize."""

from __future__ import annotations

import optuna
import pytest

from nas_attn.search.optuna_pruner import MOPruner
from nas_attn.search.pruning import HalvingConfig

MAX_EPOCHS = 9  # rungs 1 and 3 with eta=3
GOOD = [{"q": 0.9, "flops": 5.0}, {"q": 0.6, "flops": 2.0}]  # the front
BAD = [{"q": 0.5, "flops": 6.0}, {"q": 0.3, "flops": 8.0}, {"q": 0.4, "flops": 9.0}]


def _objective(pruner: MOPruner):
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        q = trial.suggest_float("q", 0.0, 1.0)
        flops = trial.suggest_float("flops", 1.0, 10.0)
        acc = 0.0
        for epoch in range(1, MAX_EPOCHS + 1):
            acc = q * (1.0 - 0.5**epoch)  # synthetic learning curve, ranking fixed by q
            if pruner.report(trial, epoch, acc, flops):
                pruner.prune(trial, epoch, acc)
        return acc, flops

    return objective


def _study(tmp_path, name="mo"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        directions=["maximize", "minimize"],
        load_if_exists=True,
    )


def test_optuna_refuses_its_own_pruning_api_for_multi_objective(tmp_path):
    trial = _study(tmp_path).ask()
    with pytest.raises(NotImplementedError):
        trial.report(0.5, 1)


def test_bad_trials_pruned_at_rung_good_trials_complete(tmp_path):
    study = _study(tmp_path)
    for params in GOOD + BAD:
        study.enqueue_trial(params)
    pruner = MOPruner(HalvingConfig(max_epochs=MAX_EPOCHS))
    study.optimize(_objective(pruner), n_trials=len(GOOD) + len(BAD))

    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2:] == [optuna.trial.TrialState.PRUNED] * 3
    for t in trials[:2]:
        assert t.user_attrs["epochs_trained"] == MAX_EPOCHS
        assert t.user_attrs["rung_decisions"] == {"1": "continue", "3": "continue"}
        assert sorted(t.user_attrs["intermediate"], key=int) == [str(e) for e in range(1, 10)]
    for t in trials[2:]:
        assert t.values is None
        assert t.user_attrs["epochs_trained"] == 1
        assert t.user_attrs["pruned_at_rung"] == 1
        assert t.user_attrs["last_accuracy"] == pytest.approx(t.params["q"] * 0.5)
    # the Pareto front of the study holds only the fully trained trials
    assert sorted(t.number for t in study.best_trials) == [0, 1]
    # the rung table as rebuilt from storage, in arrival order
    assert [row[0] for row in pruner.rung_rows(study, 1)] == [0, 1, 2, 3, 4]
    assert [row[0] for row in pruner.rung_rows(study, 3)] == [0, 1]


@pytest.mark.parametrize("stop_dominated", [False, True])
def test_stop_dominated_reaches_the_pruner(tmp_path, stop_dominated):
    study = _study(tmp_path)
    for params in (GOOD[0], BAD[0]):  # BAD[0] is dominated by GOOD[0] at every epoch
        study.enqueue_trial(params)
    pruner = MOPruner(HalvingConfig(max_epochs=MAX_EPOCHS, stop_dominated=stop_dominated))
    study.optimize(_objective(pruner), n_trials=2)
    second = study.get_trials()[1]
    if stop_dominated:
        assert second.state == optuna.trial.TrialState.PRUNED
        assert second.user_attrs["pruned_at_rung"] == 1
    else:  # two trials are fewer than eta: the quantile lets both go on
        assert second.state == optuna.trial.TrialState.COMPLETE


def test_rung_table_is_shared_through_storage(tmp_path):
    """A second driver (a fresh study object and pruner on the same file) sees the rungs."""
    first = _study(tmp_path, "shared")
    for params in GOOD + BAD[:1]:
        first.enqueue_trial(params)
    first.optimize(_objective(MOPruner(HalvingConfig(max_epochs=MAX_EPOCHS))), n_trials=3)

    second = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'study.db'}")
    second.enqueue_trial({"q": 0.45, "flops": 7.0})  # dominated by both front trials
    second.enqueue_trial({"q": 0.95, "flops": 1.5})  # dominates everyone
    second.optimize(_objective(MOPruner(HalvingConfig(max_epochs=MAX_EPOCHS))), n_trials=2)
    late_bad, late_good = second.get_trials()[3:]
    assert late_bad.state == optuna.trial.TrialState.PRUNED
    assert late_bad.user_attrs["pruned_at_rung"] == 1
    assert late_good.state == optuna.trial.TrialState.COMPLETE


def test_disabled_pruner_lets_everything_complete(tmp_path):
    study = _study(tmp_path)
    for params in BAD + GOOD:
        study.enqueue_trial(params)
    pruner = MOPruner(HalvingConfig(max_epochs=3, enabled=False))

    def objective(trial):
        q, flops = trial.suggest_float("q", 0, 1), trial.suggest_float("flops", 1, 10)
        for epoch in range(1, 4):
            assert not pruner.report(trial, epoch, q * epoch / 3, flops)
        return q, flops

    study.optimize(objective, n_trials=5)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())
