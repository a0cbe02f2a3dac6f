"""Ray Tune scheduler: Pareto successive halving over (accuracy, cost).

Ray's own schedulers (ASHA, HyperBand, median stopping) compare one metric. This scheduler is a
thin adapter around :class:`nas_attn.search.pruning.ParetoHalving`: every result that carries
the epoch, accuracy and cost keys is handed to ``ParetoHalving.report`` and its answer becomes
``STOP`` or ``CONTINUE``. Scheduling order stays FIFO (the base class).

Details
- ``metric`` is the accuracy key (maximised), ``cost_metric`` the cost key (minimised);
  ``directions`` can say otherwise. ``time_attr`` is the epoch key (``training_iteration``
  by default, which equals the epoch when the trainable reports once per epoch).
- A result missing one of the keys is passed over (``CONTINUE``), as Ray's ASHA does; the
  runner fails such a trial itself. A non-finite accuracy or cost stops the trial
  (``STOP``, recorded in ``nonfinite``); the runner records the fail reason.
- A result at ``max_epochs`` returns ``CONTINUE``: the trial has its full budget and ends by
  itself, so the trainable can still finish its work (the runner's evaluator keeps the final
  weights after the last report; a ``STOP`` there would kill it first). A result *beyond*
  ``max_epochs`` returns ``STOP``, so a trainable that trains longer is cut; neither is listed
  in ``stopped``.
- A promoted trial (its config carries ``resume_epoch``, set by the searcher) is reported
  with that ``start_epoch``: the rungs it already passed as an earlier trial are not decided
  again.
- ``stopped`` maps trial id -> rung epoch for the trials this scheduler pruned.
- ``save``/``restore`` write/read the decision state as JSON, so a restored experiment keeps
  its rung tables.
- ``set_search_properties`` accepts the Tuner's metric only when it is None or equals
  ``metric``; the Tuner's ``mode`` must then be ``max`` for a maximised accuracy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from nas_attn.errors import ConfigError
from nas_attn.search.pruning import DEFAULT_DIRECTIONS, STOP, HalvingConfig, ParetoHalving

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController


class ParetoHalvingScheduler(FIFOScheduler):
    """Multi-objective asynchronous successive halving for Ray Tune."""

    def __init__(
        self,
        config: HalvingConfig,
        metric: str = "val_accuracy",
        cost_metric: str = "flops",
        time_attr: str = "training_iteration",
        directions: Sequence[str] = DEFAULT_DIRECTIONS,
    ) -> None:
        super().__init__()
        for name, value in (
            ("metric", metric),
            ("cost_metric", cost_metric),
            ("time_attr", time_attr),
        ):
            if not isinstance(value, str) or not value:
                raise ConfigError(name, value, "must be a non-empty result key")
        self._metric = metric
        self.cost_metric = cost_metric
        self.time_attr = time_attr
        self.halving = ParetoHalving(config, directions)
        self.nonfinite: set[str] = set()

    @property
    def config(self) -> HalvingConfig:
        return self.halving.config

    @property
    def stopped(self) -> dict[Any, int]:
        return dict(self.halving.stopped)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric is not None and metric != self._metric:
            return False
        want = "max" if self.halving.directions[0] in ("maximize", "max") else "min"
        return not (metric is not None and mode is not None and mode != want)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        keys = (self.time_attr, self._metric, self.cost_metric)
        if any(result.get(k) is None for k in keys):
            return TrialScheduler.CONTINUE
        epoch = result[self.time_attr]
        acc, cost = float(result[self._metric]), float(result[self.cost_metric])
        if not (math.isfinite(acc) and math.isfinite(cost)):
            self.nonfinite.add(trial.trial_id)
            return TrialScheduler.STOP
        if int(epoch) > self.config.max_epochs:
            return TrialScheduler.STOP
        start = int((trial.config or {}).get("resume_epoch") or 0)
        decision = self.halving.report(trial.trial_id, int(epoch), acc, cost, start)
        if decision == STOP:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        sizes = ", ".join(f"{r}: {len(rows)}" for r, rows in self.halving.rung_table.items())
        return (
            f"Using Pareto halving (eta={self.config.eta}, rungs {{{sizes}}}): "
            f"num_stopped={len(self.halving.stopped)}"
        )

    def save(self, checkpoint_path: str) -> None:
        state = {
            "halving": self.halving.to_dict(),
            "nonfinite": sorted(self.nonfinite),
            "metric": self._metric,
            "cost_metric": self.cost_metric,
            "time_attr": self.time_attr,
        }
        with open(checkpoint_path, "w", encoding="utf-8") as fh:
            json.dump(state, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as fh:
            state = json.load(fh)
        self.halving = ParetoHalving.from_dict(state["halving"])
        self.nonfinite = set(state["nonfinite"])
        self._metric = state["metric"]
        self.cost_metric = state["cost_metric"]
        self.time_attr = state["time_attr"]
