"""Pareto successive halving for multi-objective Optuna studies in a plain ``study.optimize``.

Optuna's own pruning API refuses multi-objective studies: ``trial.report`` and
``trial.should_prune`` raise ``NotImplementedError`` there (optuna 5.0). ``MOPruner`` is a thin
adapter around :func:`nas_attn.search.pruning.decide` that needs neither:

- intermediate values live in user attributes (the only per-trial store Optuna allows for such
  studies): ``intermediate`` = ``{"<epoch>": [accuracy, flops], ...}``, ``epochs_trained``,
  ``last_accuracy``, and ``rung_<r>`` = ``{"values": [accuracy, flops], "t": unix time}`` once
  the trial has been decided at rung ``r`` (plus ``rung_decisions`` = ``{"<r>": "continue" |
  "stop"}``);
- the rung table is rebuilt from the study's trials at every decision, so every process that
  shares the storage (several drivers on one SQLite/PostgreSQL study) sees the same table.
  Two processes deciding at the same rung at the same instant may miss each other's entry;
  that is the usual asynchronous-halving race and only makes the rule a little more lenient.

Usage inside an objective::

    pruner = MOPruner(HalvingConfig(max_epochs=9))
    def objective(trial):
        ...
        for epoch in range(1, 10):
            acc = train_one_epoch()
            if pruner.report(trial, epoch, acc, flops):
                pruner.prune(trial, epoch, acc)     # raises optuna.TrialPruned
        return acc, flops

A pruned trial ends as ``TrialState.PRUNED`` (no values) with ``epochs_trained``,
``last_accuracy`` and ``pruned_at_rung`` attributes, so it never enters the Pareto front.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NoReturn

import optuna

from nas_attn.errors import ConfigError
from nas_attn.search.outcome import INTERMEDIATE
from nas_attn.search.pruning import (
    CONTINUE,
    DEFAULT_DIRECTIONS,
    STOP,
    HalvingConfig,
    _int_field,
    decide,
)

DECISIONS = "rung_decisions"


def _rung_key(rung: int) -> str:
    return f"rung_{rung}"


class MOPruner:
    """Multi-objective early stopping for a plain Optuna loop (see the module docstring)."""

    def __init__(
        self, config: HalvingConfig, directions: Sequence[str] = DEFAULT_DIRECTIONS
    ) -> None:
        if not isinstance(config, HalvingConfig):
            raise ConfigError("config", config, "expected a HalvingConfig")
        self.config = config
        self.directions = tuple(directions)
        self._rungs = config.rungs()

    def rung_rows(
        self, study: optuna.Study, rung: int, exclude: int | None = None
    ) -> list[tuple[Any, ...]]:
        """``(trial_number, accuracy, flops)`` of every stored trial decided at ``rung``, in
        arrival order (the time each was recorded, then the trial number)."""
        rows = []
        for t in study.get_trials(deepcopy=False):
            rec = t.user_attrs.get(_rung_key(rung))
            if rec is None or t.number == exclude:
                continue
            rows.append((float(rec["t"]), t.number, *rec["values"]))
        rows.sort()
        return [row[1:] for row in rows]

    def report(self, trial: optuna.Trial, epoch: int, accuracy: float, flops: float) -> bool:
        """Store this epoch's values on the trial; True when the trial should stop now."""
        _int_field("epoch", epoch, 0)
        accuracy, flops = float(accuracy), float(flops)
        attrs = trial.user_attrs
        inter = dict(attrs.get(INTERMEDIATE, {}))
        inter[str(epoch)] = [accuracy, flops]
        trial.set_user_attr(INTERMEDIATE, inter)
        trial.set_user_attr("epochs_trained", epoch)
        trial.set_user_attr("last_accuracy", accuracy)
        if not self.config.enabled:
            return False
        reached = [r for r in self._rungs if r <= epoch]
        if not reached:
            return False
        rung = max(reached)
        done = dict(attrs.get(DECISIONS, {}))
        if STOP in done.values():
            return True
        if str(rung) in done:
            return done[str(rung)] == STOP
        rows = [
            *self.rung_rows(trial.study, rung, exclude=trial.number),
            (trial.number, accuracy, flops),
        ]
        go_on = decide(
            rows,
            trial.number,
            self.config.eta,
            self.directions,
            self.config.tie_break,
            self.config.min_trials,
            self.config.stop_dominated,
        )
        trial.set_user_attr(_rung_key(rung), {"values": [accuracy, flops], "t": time.time()})
        done[str(rung)] = CONTINUE if go_on else STOP
        trial.set_user_attr(DECISIONS, done)
        return not go_on

    def prune(self, trial: optuna.Trial, epoch: int, accuracy: float) -> NoReturn:
        """End the trial as PRUNED, recording how far it trained; raises ``TrialPruned``."""
        mark_pruned(trial, epoch, accuracy)
        raise optuna.TrialPruned(f"stopped by Pareto halving after epoch {epoch}")


def mark_pruned(trial: optuna.Trial, epochs_trained: int, last_accuracy: float) -> None:
    """Record ``epochs_trained``, ``last_accuracy`` and ``pruned_at_rung`` on a trial about to
    be pruned (``raise optuna.TrialPruned()`` afterwards, or use :meth:`MOPruner.prune`)."""
    trial.set_user_attr("epochs_trained", int(epochs_trained))
    trial.set_user_attr("last_accuracy", float(last_accuracy))
    decisions = trial.user_attrs.get(DECISIONS, {})
    stops = [int(r) for r, d in decisions.items() if d == STOP]
    if stops:
        trial.set_user_attr("pruned_at_rung", min(stops))
