"""Quality of a search's result against a tabular benchmark's true Pareto front (pure numpy).

The *found set* after k trials is the set of architectures the search trained to the full
budget (its COMPLETE trials) among its first k trials. Each is scored by the table's true
objectives (mean final accuracy over seeds, FLOPs), not by the noisy value the search saw:
the metrics measure whether the search trained the right architectures.

- ``hv_ratio``: HV(found) / HV(true front), with the table's fixed reference point
  (:attr:`attnbench.table.Table.reference_point`). Hypervolume: Zitzler & Thiele 1998.
- ``recall_exact``: fraction of the true front's architectures in the found set (an
  architecture with identical objectives counts as the same).
- ``recall_std``: fraction of true-front architectures f for which the found set holds a g with
  ``flops[g] <= flops[f]`` and ``acc[g] >= acc[f] - std[f]`` (std: f's seed standard
  deviation), i.e. recalled within one seed-std.
- ``igd_plus``: IGD+ (Ishibuchi et al., EMO 2015) of the found set to the true front, both
  objectives min-max normalised over the table; NaN while nothing is found.
- ``trials_to`` / ``epochs_to``: the first trial count (or epochs consumed) at which
  ``hv_ratio`` reaches a target (95 %), ``inf`` when it never does.
- :func:`startup_oracle_trials`: the fewest trials *any* sampler needs to reach a target when
  its first trials are random (Optuna's TPE and GP start with 10): the random prefix, then one
  best architecture per trial, chosen knowing the table. It bounds what a model-based sampler
  can gain over random search on a table.

Every metric depends only on the non-dominated part of the found set (a dominated point adds
no volume, cannot be a front member, and is never closer in IGD+ than its dominator), so
:func:`trace_metrics` recomputes only when that part changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.table import DIRECTIONS, Table
from nas_attn.pareto import hypervolume, igd_plus, pareto_front_mask

METRICS = ("hv_ratio", "recall_exact", "recall_std", "igd_plus")


@dataclass(frozen=True)
class FrontScorer:
    """The table's true front and normalisation, precomputed once per table."""

    objectives: np.ndarray  # (A, 2) mean accuracy, flops
    front: np.ndarray  # indices of the true front
    std: np.ndarray  # (A,) seed std of the final accuracy
    ref: tuple[float, float]
    hv_true: float
    lo: np.ndarray
    span: np.ndarray

    @classmethod
    def of(cls, table: Table) -> FrontScorer:
        y = table.objectives
        ref = table.reference_point
        hv_true = hypervolume(y[table.true_front], ref, DIRECTIONS)
        lo, hi = y.min(axis=0), y.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return cls(y, table.true_front, table.final_std, ref, hv_true, lo, span)

    def score(self, found: Sequence[int]) -> dict[str, float]:
        """The four metrics of a found set (architecture indices; order and repeats ignored)."""
        idx = np.unique(np.asarray(list(found), dtype=int))
        if idx.size == 0:
            return {"hv_ratio": 0.0, "recall_exact": 0.0, "recall_std": 0.0,
                    "igd_plus": float("nan")}
        g = self.objectives[idx]
        f = self.objectives[self.front]
        hv = hypervolume(g, self.ref, DIRECTIONS) / self.hv_true if self.hv_true > 0 else 1.0
        # g weakly dominates f: acc_g >= acc_f and flops_g <= flops_f
        flops_ok = g[None, :, 1] <= f[:, None, 1]
        exact = (flops_ok & (g[None, :, 0] >= f[:, None, 0])).any(axis=1)
        tol = self.std[self.front][:, None]
        near = (flops_ok & (g[None, :, 0] >= f[:, None, 0] - tol)).any(axis=1)
        igd = igd_plus((g - self.lo) / self.span, (f - self.lo) / self.span, DIRECTIONS)
        return {"hv_ratio": float(hv), "recall_exact": float(exact.mean()),
                "recall_std": float(near.mean()), "igd_plus": float(igd)}


def trace_metrics(scorer: FrontScorer, archs: Sequence[int], complete: Sequence[bool]
                  ) -> dict[str, np.ndarray]:
    """Each metric after every trial: arrays of length ``len(archs)`` (entry k: after k+1
    trials). ``archs[k]`` is trial k's architecture, ``complete[k]`` whether it was COMPLETE."""
    n = len(archs)
    out = {m: np.empty(n) for m in METRICS}
    nd: list[int] = []  # non-dominated found architectures
    current = scorer.score([])
    for k in range(n):
        if complete[k]:
            a = int(archs[k])
            cand = [*nd, a] if a not in nd else nd
            if cand is not nd:
                mask = pareto_front_mask(scorer.objectives[cand], DIRECTIONS)
                new_nd = [c for c, keep in zip(cand, mask, strict=True) if keep]
                if new_nd != nd:
                    nd = new_nd
                    current = scorer.score(nd)
        for m in METRICS:
            out[m][k] = current[m]
    return out


def startup_oracle_trials(scorer: FrontScorer, startup: Sequence[int], level: float
                          ) -> tuple[int, bool]:
    """(trials, exact): the fewest trials to reach ``level`` HV ratio for a sampler whose first
    trials are ``startup`` and which then knows the table (pure).

    The startup's own first trial at the level, if any; else ``len(startup)`` plus the further
    architectures added greedily, each the one of largest HV gain by the table's means. Greedy
    is exact up to 2 additions (when no single addition reaches the level, 2 is the least
    possible), so ``exact`` is False only beyond that, where the count is an upper bound.
    """
    found: list[int] = []
    for k, a in enumerate(startup, 1):
        found.append(int(a))
        if scorer.score(found)["hv_ratio"] >= level - 1e-12:
            return k, True
    extra, hv = 0, scorer.score(found)["hv_ratio"]
    while hv < level - 1e-12:
        gains = [scorer.score([*found, a])["hv_ratio"] for a in range(len(scorer.objectives))]
        best = int(np.argmax(gains))
        found.append(best)
        extra, hv = extra + 1, gains[best]
    return len(startup) + extra, extra <= 2


def random_sampler_weights(arch_params: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each architecture's probability under random search that draws every decision of a
    define-by-run space uniformly (Optuna's RandomSampler), for a table of the *whole* space.

    An architecture's parameters are the decisions it made; a decision's choices are the
    distinct values it takes across the table. So on a space where ``none`` skips the position
    decision, a plain stage is drawn more often than each (module, position) pair.
    """
    values: dict[str, set[str]] = {}
    for p in arch_params:
        for k, v in p.items():
            values.setdefault(k, set()).add(repr(v))
    w = np.array([np.prod([1.0 / len(values[k]) for k in p]) for p in arch_params])
    return w / w.sum()


def _boot_medians(values: Sequence[float], n_boot: int, rng: np.random.Generator
                  ) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.median(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    # "lower"/"higher" pick sample values: no interpolation with inf
    a = (1 - level) / 2
    return (float(np.quantile(samples, a, method="lower")),
            float(np.quantile(samples, 1 - a, method="higher")))


def median_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 4000,
              seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median of ``values`` (inf allowed: a
    repetition that never reached a target)."""
    return _interval(_boot_medians(values, n_boot, np.random.default_rng(seed)), level)


def ratio_ci(num: Sequence[float], den: Sequence[float], level: float = 0.95,
             n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of median(num) / median(den), the two samples
    resampled independently (two methods' repetitions)."""
    rng = np.random.default_rng(seed)
    mn, md = _boot_medians(num, n_boot, rng), _boot_medians(den, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _interval(np.where(md > 0, mn / md, np.inf), level)


def first_reaching(values: np.ndarray, axis_values: np.ndarray, target: float) -> float:
    """The ``axis_values`` entry at the first index where ``values >= target`` (inf if none)."""
    hit = np.flatnonzero(np.asarray(values) >= target - 1e-12)
    return float(axis_values[hit[0]]) if hit.size else float("inf")


def trials_to(values: np.ndarray, target: float) -> float:
    """The trial count (1-based) at which a per-trial metric first reaches ``target``."""
    return first_reaching(values, np.arange(1, len(values) + 1), target)


def on_grid(values: np.ndarray, consumed: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A per-trial metric as a step function of cumulative epochs, sampled at ``grid``: the
    value after the last trial whose cumulative epochs are <= each grid point (0 before the
    first trial ends)."""
    pos = np.searchsorted(np.asarray(consumed), np.asarray(grid), side="right") - 1
    vals = np.asarray(values, dtype=float)
    return np.where(pos >= 0, vals[np.clip(pos, 0, None)], 0.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks of a 1-D array, ties sharing their mean rank (as Spearman's rho needs)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x), dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two 1-D arrays (ties at their mean rank; 0 when either is constant)."""
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return float(ra @ rb) / denom if denom > 0 else 0.0


def rho_by_epoch(acc: np.ndarray) -> np.ndarray:
    """Spearman correlation, across architectures, between the accuracy after each epoch and
    the final accuracy of the same training, averaged over seeds. ``acc``: (archs, seeds,
    epochs) curves; returns ``(epochs,)``."""
    _, n_seeds, n_epochs = acc.shape
    return np.array([np.mean([spearman(acc[:, s, e], acc[:, s, -1]) for s in range(n_seeds)])
                     for e in range(n_epochs)])


def seed_rho(acc: np.ndarray) -> float:
    """Spearman's rho, across architectures, between two seeds' final accuracies, averaged
    over the pairs of seeds (NaN with one seed). ``acc``: (archs, seeds, epochs) curves."""
    n = acc.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if not pairs:
        return float("nan")
    final = acc[:, :, -1]
    return float(np.mean([spearman(final[:, i], final[:, j]) for i, j in pairs]))


def rank_correlation_by_epoch(table: Table) -> np.ndarray:
    """:func:`rho_by_epoch` of the table's curves: ``(epochs,)``.

    How well a rung at epoch ``e`` can rank architectures is bounded by entry ``e - 1``: it
    explains what early stopping can and cannot save on a table."""
    return rho_by_epoch(table.acc)


def seed_rank_correlation(table: Table) -> float:
    """:func:`seed_rho` of the table's curves.

    Whether the table ranks architectures at all: near 0, the differences between them are
    seed noise, its "true front" is a draw, and no sampler or stopping rule can beat random
    search on it."""
    return seed_rho(table.acc)
