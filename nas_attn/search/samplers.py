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


def make_sampler(name: str, seed: int, grid: Mapping[str, list[Any]] | None = None,
                 field: str = "--sampler") -> Any:
    import optuna

    if name == "tpe":
        with warnings.catch_warnings():  # multivariate and group are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
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
