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
    worst_values,
)
from nas_attn.search.samplers import make_sampler

NAMES = [ACCURACY, "flops"]
DIST = {"op": CategoricalDistribution(["a", "b", "c", "d"])}


def test_imputed_values_take_costs_then_last_accuracy_then_the_worst() -> None:
    attrs = {"flops": 7.0, "last_accuracy": 0.4}
    assert imputed_values(attrs, NAMES, [0.1, 9.0]) == [0.4, 7.0]
    assert imputed_values({"flops": 7.0}, NAMES, [0.1, 9.0]) == [0.1, 7.0]
    assert imputed_values({}, NAMES, [0.1, 9.0]) == [0.1, 9.0]
    assert imputed_values({"flops": 7.0}, NAMES, [None, None]) is None
    assert imputed_values({"flops": "x", "last_accuracy": 0.4}, NAMES, [0.1, 9.0]) == [0.4, 9.0]


def test_worst_values_follow_the_directions() -> None:
    rows = [[0.5, 3.0], [0.9, 8.0], [0.7, 1.0]]
    assert worst_values(rows, ["maximize", "minimize"]) == [0.5, 8.0]
    assert worst_values(rows, ["minimize", "maximize"]) == [0.9, 1.0]
    assert worst_values([], ["maximize", "minimize"]) == [None, None]


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
    assert [t.values for t in seen] == [[0.8, 5.0], [0.3, 2.0], [0.8, 4.0]]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED,
                                               TrialState.PRUNED]
    assert study.trials[1].values is None
    assert view._get_trials(states=(TrialState.PRUNED,)) == []
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
    sampler = make_sampler("gp", 0, startup_trials=3, learn_from_pruned=learn)
    trial = study.ask()
    params = sampler.sample_relative(study, study._storage.get_trial(trial._trial_id), DIST)
    assert (params != {}) is learn


def test_pruned_aware_subclasses_the_optuna_sampler() -> None:
    cls = pruned_aware(optuna.samplers.TPESampler)
    assert issubclass(cls, optuna.samplers.TPESampler)
    assert cls.__name__ == "PrunedAwareTPESampler"
    assert type(make_sampler("tpe", 0, learn_from_pruned=True)) is cls
    assert type(make_sampler("tpe", 0)) is optuna.samplers.TPESampler
