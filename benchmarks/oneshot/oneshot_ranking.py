"""How far a supernet's ranking can be trusted, against a tabular benchmark (pure numpy; read by
measure.py, tested in tests/test_oneshot_ranking.py).

- :func:`kendall` / Spearman (``attnbench.metrics.spearman``): predicted accuracy vs the
  table's mean final accuracy over every architecture.
- :func:`top_k_recall`: the fraction of the true front among the ``k`` architectures of
  highest predicted accuracy.
- :func:`confirmation_order`: the order the pipeline confirms architectures in: the predicted
  front first (non-dominated sorting of (predicted accuracy, FLOPs)), then the next layer;
  inside a layer by predicted accuracy, best first (``acc``), or greedily by predicted
  hypervolume gain (``hv``: the point adding most predicted volume to those already chosen).
- :func:`option_index`, :func:`log_probability`: a learned supernet's distribution as a
  ranking of its own (each architecture's log-probability, the sum over stages).
- :func:`pipeline_cost`: stand-alone epochs until the confirmed set reaches a fraction of the
  true front's hypervolume (confirmation = a 20-epoch stand-alone training, read from the table:
  its architecture scored by the table's true objectives, as the replay scores a search).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from attnbench.metrics import FrontScorer
from nas_attn.pareto import hypervolume, non_dominated_sort

DIRECTIONS = ("maximize", "minimize")


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled), 0 when either side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(kendalltau(a, b).statistic)


def seed_kendall(acc: np.ndarray) -> float:
    """Kendall's tau between two seeds' final accuracies, mean over the pairs of seeds."""
    n = acc.shape[1]
    final = acc[:, :, -1]
    return float(np.mean([kendall(final[:, i], final[:, j])
                          for i in range(n) for j in range(i + 1, n)]))


def option_index(options: Sequence[Sequence[Any]], specs: Sequence[Any]) -> list[list[int]]:
    """Per stage ``s``, each spec's index in ``options[s]`` (stage entries compared by their
    canonical dicts)."""
    out = []
    for s, opts in enumerate(options):
        keys = [json.dumps(o.to_dict(), sort_keys=True) for o in opts]
        out.append([keys.index(json.dumps(sp.stages[s].to_dict(), sort_keys=True))
                    for sp in specs])
    return out


def log_probability(probs: Sequence[Sequence[float]], opt_of: Sequence[Sequence[int]]
                    ) -> np.ndarray:
    """Each architecture's log-probability under per-stage distributions ``probs`` (stage
    ``s``'s option of architecture ``i`` is ``opt_of[s][i]``)."""
    return sum(np.log(np.asarray(p, dtype=float))[np.asarray(opt_of[s])]
               for s, p in enumerate(probs))


def top_k_recall(pred: Sequence[float], front: Sequence[int], k: int) -> float:
    """Fraction of ``front`` (indices) among the ``k`` highest predicted values."""
    top = set(np.argsort(-np.asarray(pred, dtype=float), kind="stable")[:k].tolist())
    return float(np.mean([int(f) in top for f in front]))


ORDERS = ("acc", "hv")


def confirmation_order(pred: Sequence[float], flops: Sequence[float], order: str = "acc",
                       ref: Sequence[float] | None = None) -> list[int]:
    """Every architecture, predicted front first, then the next layer, ...; inside a layer the
    highest predicted accuracy first (``acc``) or the largest predicted hypervolume gain over
    the points already chosen (``hv``, with reference point ``ref``)."""
    pred = np.asarray(pred, dtype=float)
    pts = np.column_stack([pred, np.asarray(flops, dtype=float)])
    out: list[int] = []
    for layer in non_dominated_sort(pts, DIRECTIONS):
        rest = sorted(layer, key=lambda i: (-pred[i], i))
        if order == "acc":
            out.extend(rest)
            continue
        if ref is None:
            raise ValueError("order 'hv' needs a reference point")
        chosen: list[int] = []
        while rest:
            gains = [hypervolume(pts[[*chosen, i]], ref, DIRECTIONS) for i in rest]
            chosen.append(rest.pop(int(np.argmax(gains))))
        out.extend(chosen)
    return out


@dataclass(frozen=True)
class PipelineCost:
    predicted_front: int  # size of the predicted front (the default K)
    hv_at_front: float  # HV ratio after confirming the whole predicted front
    confirmations: float  # confirmations to reach the level (inf: never within max_confirm)
    epochs: float  # supernet epochs + 20 per confirmation (inf when never)


def pipeline_cost(pred: Sequence[float], scorer: FrontScorer, flops: Sequence[float],
                  supernet_epochs: float, level: float = 0.95, confirm_epochs: int = 20,
                  max_confirm: int = 50, order: str = "acc") -> PipelineCost:
    """Confirm in :func:`confirmation_order` until the confirmed set's HV ratio (the table's
    true objectives) reaches ``level``."""
    order = confirmation_order(pred, flops, order, scorer.ref)
    pts = np.column_stack([np.asarray(pred, dtype=float), np.asarray(flops, dtype=float)])
    k = len(non_dominated_sort(pts, DIRECTIONS)[0])
    hv_front = scorer.score(order[:k])["hv_ratio"]
    n: float = float("inf")
    for i in range(1, min(max_confirm, len(order)) + 1):
        if scorer.score(order[:i])["hv_ratio"] >= level - 1e-12:
            n = i
            break
    return PipelineCost(k, hv_front, n, supernet_epochs + confirm_epochs * n)
