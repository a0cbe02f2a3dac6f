"""The sampler's view of PRUNED trials (nas_attn.search.pruned_view)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas_attn.search.outcome import ACCURACY
from nas_attn.search.pruned_view import (
    OBJECTIVES_ATTR,
    _PrunedAsComplete,
    imputed_values,
    pruned_aware,
)
from nas_attn.search.samplers import make_sampler

NAMES = [ACCURACY, "flops"]
DIST = {"op": CategoricalDistribution(["a", "b", "c", "d"])}


def test_imputed_values_take_costs_then_last_accuracy_else_leave_the_trial_out() -> None:
    attrs = {"flops": 7.0, "last_accuracy": 0.4}
    assert imputed_values(attrs, NAMES) == [0.4, 7.0]
    assert imputed_values({**attrs, ACCURACY: 0.6}, NAMES) == [0.6, 7.0]  # recorded first
    assert imputed_values({"flops": 7.0}, NAMES) is None  # no accuracy
    assert imputed_values({"last_accuracy": 0.4}, NAMES) is None  # no cost
    assert imputed_values({"flops": "x", "last_accuracy": 0.4}, NAMES) is None
    assert imputed_values({"flops": True, "last_accuracy": 0.4}, NAMES) is None
    assert imputed_values({"flops": 7, "last_accuracy": float("nan")}, NAMES) is None
    assert imputed_values({"flops": 7, "last_accuracy": 0.4}, ["flops", ACCURACY]) == [7.0, 0.4]


def _study(names: list[str] | None = NAMES) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"])
    if names is not None:
        study.set_user_attr(OBJECTIVES_ATTR, names)
    for state, values, attrs in [
        (TrialState.COMPLETE, [0.8, 5.0], {"flops": 5.0}),
        (TrialState.PRUNED, None, {"flops": 2.0, "last_accuracy": 0.3}),
        (TrialState.PRUNED, None, {"flops": 4.0}),
    ]:
        t = study.ask({"op": DIST["op"]})
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        study.tell(t, values, state=state)
    return study


def test_the_view_shows_pruned_trials_complete_and_leaves_the_study_alone() -> None:
    study = _study()
    view = _PrunedAsComplete(study)
    seen = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [t.values for t in seen] == [[0.8, 5.0], [0.3, 2.0]]  # the third has no accuracy
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED,
                                               TrialState.PRUNED]
    assert study.trials[1].values is None
    assert [t.number for t in view._get_trials(states=(TrialState.PRUNED,))] == [2]
    assert len(view.get_trials()) == len(view.trials) == 3
    assert view.directions == study.directions  # everything else is forwarded


def test_a_study_without_objective_names_is_shown_unchanged() -> None:
    study = _study(names=None)
    view = _PrunedAsComplete(study)
    assert [t.state for t in view.get_trials()] == [t.state for t in study.trials]
    assert len(view._get_trials(states=(TrialState.COMPLETE,))) == 1


@pytest.mark.parametrize("learn", [False, True])
def test_gp_counts_pruned_trials_toward_its_startup_only_when_it_learns(learn: bool) -> None:
    """Plain GP stays random (no relative sample) while fewer than ``startup`` trials are
    COMPLETE; the pruned-aware GP counts the pruned ones and proposes from its model."""
    study = _study()
    sampler = make_sampler("gp", 0, startup_trials=2, learn_from_pruned=learn)
    trial = study.ask()
    params = sampler.sample_relative(study, study._storage.get_trial(trial._trial_id), DIST)
    assert (params != {}) is learn


def test_pruned_aware_subclasses_the_optuna_sampler() -> None:
    cls = pruned_aware(optuna.samplers.TPESampler)
    assert issubclass(cls, optuna.samplers.TPESampler)
    assert cls.__name__ == "PrunedAwareTPESampler"
    assert type(make_sampler("tpe", 0, learn_from_pruned=True)) is cls
    assert type(make_sampler("tpe", 0)) is optuna.samplers.TPESampler


@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_a_trial_the_view_cannot_value_stays_out_for_good(sampler: str) -> None:
    """Optuna's samplers cache their intersection search space and never look at a finished
    trial twice, so a trial must not change state in the view as the study grows. Here the
    first trial is PRUNED without an accuracy and lacks parameter ``k``; it must stay out of
    the model even after COMPLETE trials exist (the GP raised ``KeyError: 'k'`` when the view
    started valuing it with the worst COMPLETE accuracy)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(
        sampler, 0, startup_trials=2, learn_from_pruned=True))
    study.set_user_attr(OBJECTIVES_ATTR, NAMES)
    study.enqueue_trial({"op": "a"})
    first = study.ask()
    first.suggest_categorical("op", ["a", "b"])
    first.set_user_attr("flops", 1.0)  # a cost, but no last_accuracy
    study.tell(first, state=TrialState.PRUNED)
    for _ in range(5):
        trial = study.ask()
        op = trial.suggest_categorical("op", ["a", "b"])
        k = trial.suggest_int("k", 1, 4)
        trial.set_user_attr("flops", float(k))
        study.tell(trial, [0.5 + 0.1 * k - 0.05 * (op == "a"), float(k)])
    view = _PrunedAsComplete(study).get_trials(deepcopy=False)
    assert [t.state for t in view] == [TrialState.PRUNED] + [TrialState.COMPLETE] * 5
