"""Multi-objective early stopping: asynchronous successive halving on Pareto dominance.

This is ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020,
arXiv:1810.05934) with its one-metric ranking replaced by a multi-objective one: at a rung the
trials are ranked by non-dominated sorting of (accuracy at the rung, cost), ties inside a front
broken by NSGA-II crowding distance or by exclusive hypervolume contribution (as in
MO-ASHA, Schmucker et al., arXiv:2106.12639, "Multi-objective Asynchronous Successive
Halving").

Rules (decided here, documented in docs/early-stopping.md)
- Rungs are at ``grace * eta**k`` epochs, strictly below ``max_epochs``.
- A trial reaching a rung joins that rung's table (kept for good, stopped trials included) and
  goes on iff it ranks in the top ``ceil(n / eta)`` of the ``n`` trials in the table, itself
  included. ``ceil`` (not ``floor``) so that at least one trial always goes on.
- While ``n < min_trials_at_rung`` (default ``eta``) the arriving trial goes on unconditionally:
  fewer than ``eta`` trials cannot be split into a top ``1/eta``.
- ``stop_dominated`` (off by default): the arriving trial also stops when a trial already in
  the rung table dominates it there (accuracy at the rung at least as good, cost no larger, one
  strictly better), whatever the table's size. The quantile alone lets half the trials of a
  small table go on; on the tabular benchmark this option saves about 5 points of the epochs
  (docs/early-stopping.md).
- Asynchronous: decisions are taken on arrival and never revised. The same trials can thus be
  decided differently in a different arrival order; a trial that went on while the table was
  small can still be stopped at the next rung.
- Ranking is a total order: front index, then the tie-break (larger crowding distance or
  larger hypervolume contribution first), then the first objective (better first), then the
  arrival order (earlier first). So a batch decision over ``n`` trials keeps exactly
  ``ceil(n / eta)``.
- A report is placed at the highest rung at or below its epoch; a rung the trial skipped
  (epochs reported sparsely) gets no entry for it, like Ray's ASHA. Reports between rungs
  and at or after the last rung go on (training ends at ``max_epochs`` by itself).
- Promotion (``promote: true``, carried out by the searcher and the trainable): when the
  sampler proposes a stopped architecture again, a new trial resumes its training after the
  rung it was stopped at. That trial reports with ``start_epoch`` = that rung: rungs at or
  below it are passed (its row from the first trial stays in their tables), the later ones
  decide as for any trial.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from nas_attn.errors import ConfigError
from nas_attn.pareto import (
    _to_min,
    crowding_distance,
    dominates,
    hypervolume_contributions,
    non_dominated_sort,
)

TIE_BREAKS = ("crowding", "hypervolume")
DEFAULT_DIRECTIONS = ("maximize", "minimize")
CONTINUE = "continue"
STOP = "stop"

Row = tuple[Hashable, float, float]


def _int_field(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")


def check_rule(cfg: Any) -> None:
    """Validate the rule's settings that a study's ``early_stopping`` section and
    :class:`HalvingConfig` share (``max_epochs`` comes from ``train.epochs`` in a study)."""
    for name in ("enabled", "promote", "stop_dominated"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"early_stopping.{name}", getattr(cfg, name), "must be a boolean",
                              [True, False])
    _int_field("early_stopping.eta", cfg.eta, 2)
    _int_field("early_stopping.grace_epochs", cfg.grace_epochs, 1)
    if cfg.tie_break not in TIE_BREAKS:
        raise ConfigError("early_stopping.tie_break", cfg.tie_break, "unknown tie-break",
                          TIE_BREAKS)
    if cfg.min_trials_at_rung is not None:
        _int_field("early_stopping.min_trials_at_rung", cfg.min_trials_at_rung, 1)


def rung_epochs(grace: int, eta: int, max_epochs: int) -> list[int]:
    """Rung epochs ``grace * eta**k`` strictly below ``max_epochs``."""
    out, r = [], grace
    while r < max_epochs:
        out.append(r)
        r *= eta
    return out


@dataclass(frozen=True, kw_only=True)
class HalvingConfig:
    """Settings of the Pareto successive-halving rule (``early_stopping`` in a study file).

    ``min_trials_at_rung=None`` means ``eta``.
    """

    max_epochs: int
    enabled: bool = True
    eta: int = 3
    grace_epochs: int = 1
    tie_break: Literal["crowding", "hypervolume"] = "crowding"
    min_trials_at_rung: int | None = None
    promote: bool = False
    stop_dominated: bool = False

    def __post_init__(self) -> None:
        check_rule(self)
        _int_field("early_stopping.max_epochs", self.max_epochs, 1)
        if self.grace_epochs > self.max_epochs:
            raise ConfigError(
                "early_stopping.grace_epochs",
                self.grace_epochs,
                f"must be <= max_epochs ({self.max_epochs})",
            )

    @property
    def min_trials(self) -> int:
        return self.eta if self.min_trials_at_rung is None else self.min_trials_at_rung

    def rungs(self) -> list[int]:
        """Rung epochs ``grace * eta**k`` below ``max_epochs`` (independent of ``enabled``)."""
        return rung_epochs(self.grace_epochs, self.eta, self.max_epochs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HalvingConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"early_stopping.{unknown[0]}", data[unknown[0]], "unknown setting", sorted(known)
            )
        return cls(**dict(data))


def rank_rung(
    rung_rows: Sequence[Sequence[Any]],
    directions: Sequence[str] = DEFAULT_DIRECTIONS,
    tie_break: str = "crowding",
) -> list[Hashable]:
    """Trial ids of a rung table ordered best first (the total order described above).

    ``rung_rows`` holds ``(trial_id, objective_1, ..., objective_m)`` in arrival order.
    """
    if tie_break not in TIE_BREAKS:
        raise ConfigError("tie_break", tie_break, "unknown tie-break", TIE_BREAKS)
    ids = [row[0] for row in rung_rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError("rung_rows", dup, "a trial appears twice in one rung table")
    if not ids:
        return []
    values = np.asarray([list(row[1:]) for row in rung_rows], dtype=float)
    pmin = _to_min(values, directions, "rung_rows", finite=True)
    score = np.zeros(len(ids))
    front_of = np.zeros(len(ids), dtype=int)
    for f, front in enumerate(non_dominated_sort(pmin, ["minimize"] * pmin.shape[1])):
        front_of[front] = f
        if tie_break == "crowding":
            score[front] = crowding_distance(pmin[front])
        else:
            score[front] = hypervolume_contributions(
                pmin[front], _reference_point(pmin), ["minimize"] * pmin.shape[1]
            )
    # np.lexsort: last key is primary. Smaller is better for every key.
    order = np.lexsort((np.arange(len(ids)), pmin[:, 0], -score, front_of))
    return [ids[i] for i in order]


def _reference_point(pmin: np.ndarray) -> np.ndarray:
    """Hypervolume reference (minimise form): the table's nadir pushed out by 10 % of the range
    (by 1.0 where the range is 0), so the extreme points get a positive contribution."""
    lo, hi = pmin.min(axis=0), pmin.max(axis=0)
    span = hi - lo
    return hi + np.where(span > 0, 0.1 * span, 1.0)


def decide(
    rung_rows: Sequence[Sequence[Any]],
    trial_id: Hashable,
    eta: int,
    directions: Sequence[str] = DEFAULT_DIRECTIONS,
    tie_break: str = "crowding",
    min_trials: int | None = None,
    stop_dominated: bool = False,
) -> bool:
    """True when ``trial_id`` goes on past this rung (False: stop it).

    ``rung_rows`` is every ``(trial_id, accuracy_at_rung, flops)`` (more generally
    ``(trial_id, *objectives)`` matching ``directions``) that reached the rung so far, the
    candidate included. The candidate goes on iff fewer than ``min_trials`` (default ``eta``)
    trials are in the table, or it ranks in the top ``ceil(n / eta)``. With
    ``stop_dominated`` it stops whenever another trial of the table dominates it.
    """
    _int_field("eta", eta, 2)
    min_trials = eta if min_trials is None else min_trials
    _int_field("min_trials", min_trials, 1)
    ids = [row[0] for row in rung_rows]
    if trial_id not in ids:
        raise ConfigError("trial_id", trial_id, "the candidate must be in rung_rows")
    n = len(ids)
    ranked = rank_rung(rung_rows, directions, tie_break)
    if stop_dominated:
        mine = rung_rows[ids.index(trial_id)][1:]
        if any(dominates(row[1:], mine, directions) for row in rung_rows if row[0] != trial_id):
            return False
    if n < min_trials:
        return True
    return trial_id in ranked[: math.ceil(n / eta)]


class ParetoHalving:
    """Stateful ASHA bookkeeping around :func:`decide`: one rung table per rung epoch.

    ``report`` is called after every epoch; it returns ``"continue"`` or ``"stop"``. A trial
    that was stopped stays stopped (a later report for it returns ``"stop"``); a second report
    at an already decided rung returns the earlier decision, so replayed results after a resume
    are harmless. ``to_dict``/``from_dict`` round-trip the whole state through JSON.
    """

    def __init__(
        self, config: HalvingConfig, directions: Sequence[str] = DEFAULT_DIRECTIONS
    ) -> None:
        if not isinstance(config, HalvingConfig):
            raise ConfigError("config", config, "expected a HalvingConfig")
        _to_min(np.zeros((0, len(directions))), directions)  # validates directions
        self.config = config
        self.directions = tuple(str(d) for d in directions)
        self.rung_table: dict[int, list[tuple[Any, ...]]] = {r: [] for r in config.rungs()}
        self.decisions: dict[tuple[Hashable, int], str] = {}
        self.stopped: dict[Hashable, int] = {}  # trial id -> rung epoch it was stopped at

    def report(self, trial_id: Hashable, epoch: int, accuracy: float, flops: float,
               start_epoch: int = 0) -> str:
        """Record the trial's (accuracy, flops) after ``epoch`` epochs and decide.

        ``start_epoch``: a promoted trial resumed after that epoch; rungs at or below it were
        decided for the trial it resumes and are passed (``continue``, nothing recorded).
        """
        return self.report_values(trial_id, epoch, (accuracy, flops), start_epoch)

    def report_values(self, trial_id: Hashable, epoch: int, values: Sequence[float],
                      start_epoch: int = 0) -> str:
        """Like :meth:`report` for any objective vector matching ``directions``."""
        _int_field("epoch", epoch, 0)
        _int_field("start_epoch", start_epoch, 0)
        values = tuple(float(v) for v in values)
        _to_min([values], self.directions, "values", finite=True)
        if trial_id in self.stopped:
            return STOP
        if not self.config.enabled:
            return CONTINUE
        rung = self._rung_for(epoch)
        if rung is None or rung <= start_epoch:
            return CONTINUE
        key = (trial_id, rung)
        if key in self.decisions:
            return self.decisions[key]
        rows = self.rung_table[rung]
        rows.append((trial_id, *values))
        go_on = decide(
            rows,
            trial_id,
            self.config.eta,
            self.directions,
            self.config.tie_break,
            self.config.min_trials,
            self.config.stop_dominated,
        )
        decision = CONTINUE if go_on else STOP
        self.decisions[key] = decision
        if not go_on:
            self.stopped[trial_id] = rung
        return decision

    def _rung_for(self, epoch: int) -> int | None:
        """Highest rung <= epoch (None before the first rung)."""
        reached = [r for r in self.rung_table if r <= epoch]
        return max(reached) if reached else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "config": self.config.to_dict(),
            "directions": list(self.directions),
            "rungs": {str(r): [list(row) for row in rows] for r, rows in self.rung_table.items()},
            "decisions": [[tid, r, d] for (tid, r), d in self.decisions.items()],
            "stopped": [[tid, r] for tid, r in self.stopped.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParetoHalving:
        if data.get("version") != 1:
            raise ConfigError("version", data.get("version"), "unknown state version", [1])
        obj = cls(HalvingConfig.from_dict(data["config"]), data["directions"])
        for r, rows in data["rungs"].items():
            obj.rung_table[int(r)] = [tuple(row) for row in rows]
        obj.decisions = {(tid, int(r)): d for tid, r, d in data["decisions"]}
        obj.stopped = {tid: int(r) for tid, r in data["stopped"]}
        return obj
