"""Optuna samplers by name, with the constructor arguments every caller shares.

Light on purpose (no Ray import): the runner, the study validator and the tabular replay all
build their samplers here.

TPE is Optuna's multivariate TPE with ``group=True`` (a joint density over the parameters
proposed together, split by which conditional parameters a trial has), not the default
independent TPE: stage choices interact, and the space is conditional. On the tabular
benchmark the two are level (13 against 12 trials to 95 % of the front's hypervolume) and
multivariate TPE visits more distinct architectures (docs/tabular-benchmark.md,
docs/decisions.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from nas_attn.errors import ConfigError

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
# the samplers that start with random trials before their model takes over (Optuna: 10)
STARTUP_SAMPLERS = ("tpe", "gp")
# the samplers whose model sees PRUNED trials unless the study says otherwise
LEARN_FROM_PRUNED_DEFAULT = ("gp",)


def check_startup_trials(sampler: str, value: Any, field: str = "search.startup_trials"
                         ) -> int | None:
    """``startup_trials``: None (Optuna's default, 10) or an int >= 1, for tpe and gp only."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "must be an integer >= 1 (or null: Optuna's 10)")
    if sampler not in STARTUP_SAMPLERS:
        raise ConfigError(field, value, f"only the model-based samplers start with random "
                          f"trials, not {sampler!r}", STARTUP_SAMPLERS)
    return value


def check_learn_from_pruned(sampler: str, value: Any,
                            field: str = "search.learn_from_pruned") -> bool | None:
    """``learn_from_pruned``: None (the sampler's default, :func:`learns_from_pruned`) or a
    bool; true only for the model-based samplers."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ConfigError(field, value, "must be true or false (or null: the sampler's "
                          "default)", [True, False, None])
    if value and sampler not in STARTUP_SAMPLERS:
        raise ConfigError(field, value, f"only a model-based sampler learns from trials, not "
                          f"{sampler!r}", STARTUP_SAMPLERS)
    return value


def learns_from_pruned(sampler: str, value: bool | None) -> bool:
    """Whether the sampler's model sees PRUNED trials (:mod:`nas_attn.search.pruned_view`):
    ``value``, or by default for gp only (measured in docs/tabular-benchmark.md)."""
    return bool(value) if value is not None else sampler in LEARN_FROM_PRUNED_DEFAULT


def make_sampler(name: str, seed: int, grid: Mapping[str, list[Any]] | None = None,
                 field: str = "--sampler", startup_trials: int | None = None,
                 learn_from_pruned: bool = False) -> Any:
    """The sampler ``name``; ``startup_trials`` random trials before a tpe or gp model is used
    (None: Optuna's default of 10); ``learn_from_pruned``: a tpe or gp model sees PRUNED
    trials with imputed values (:mod:`nas_attn.search.pruned_view`)."""
    import optuna

    from nas_attn.search.pruned_view import pruned_aware

    def model(cls: type) -> type:
        return pruned_aware(cls) if learn_from_pruned else cls

    startup = {} if check_startup_trials(name, startup_trials) is None else {
        "n_startup_trials": startup_trials}
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate and group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return model(optuna.samplers.TPESampler)(seed=seed, multivariate=True, group=True,
                                              **startup)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        # GP models the parameters every trial has; a conditional one (an attention
        # module's own hyperparameter, a position) is drawn at random, which Optuna would
        # otherwise warn about once per parameter and trial (docs/search.md)
        return model(optuna.samplers.GPSampler)(seed=seed, warn_independent_sampling=False,
                                                **startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if not grid:
            raise ConfigError(field, name, "this search space cannot be enumerated as a grid",
                              [s for s in SAMPLERS if s != "grid"])
        return _grid_sampler(dict(grid), seed)
    raise ConfigError(field, name, "unknown sampler", SAMPLERS)


def _grid_sampler(grid: dict[str, list[Any]], seed: int) -> Any:
    import optuna

    class ExhaustiveGrid(optuna.samplers.GridSampler):
        """GridSampler without ``study.stop()`` once the grid is covered: that call is only
        legal inside ``study.optimize``; with ask/tell it raises. Proposals after the grid
        is covered repeat grid points, which the searcher reuses instead of retraining."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return ExhaustiveGrid(grid, seed=seed)
