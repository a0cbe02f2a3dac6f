"""The one-shot measurement's pure metrics (benchmarks/oneshot/oneshot_ranking.py) on small constructed
tables whose answers are worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "oneshot"))

from oneshot_ranking import (
    confirmation_order,
    kendall,
    log_probability,
    option_index,
    pipeline_cost,
    top_k_recall,
)

from attnbench.metrics import FrontScorer
from attnbench.table import Table


def _table(acc_mean, flops) -> Table:
    acc = np.repeat(np.asarray(acc_mean, dtype=np.float32)[:, None, None], 2, axis=1)
    acc = np.repeat(acc, 3, axis=2)
    n = len(acc_mean)
    return Table(acc=acc, flops=np.asarray(flops, dtype=float), params=np.ones(n, dtype=int),
                 arch_params=tuple({"i": i} for i in range(n)), seeds=np.array([0, 1]))


def test_kendall_known_values():
    assert kendall([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of 6: (5 - 1) / 6
    assert kendall([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert kendall([1, 1, 1], [1, 2, 3]) == 0.0


def test_top_k_recall():
    pred = [0.9, 0.1, 0.8, 0.5]
    assert top_k_recall(pred, [0, 2], 2) == 1.0
    assert top_k_recall(pred, [1, 2], 2) == 0.5
    assert top_k_recall(pred, [1], 3) == 0.0


def test_confirmation_order_front_first_best_first():
    # predicted: 0 (0.9, 10) and 2 (0.5, 1) are non-dominated; 1 (0.4, 5) and 3 (0.3, 20) not
    assert confirmation_order([0.9, 0.4, 0.5, 0.3], [10, 5, 1, 20]) == [0, 2, 1, 3]


def test_confirmation_order_by_predicted_volume():
    # reference (0, 11): 0 alone adds 0.9 * 1 = 0.9, 2 alone 0.5 * 10 = 5.0; then 0 adds 0.4
    pred, flops = [0.9, 0.4, 0.5, 0.3], [10, 5, 1, 20]
    assert confirmation_order(pred, flops, "hv", ref=(0.0, 11.0))[:2] == [2, 0]


def test_pipeline_cost_counts_confirmations_until_the_level():
    # true front: arch 2 (0.8, 1) alone; the supernet ranks it third
    table = _table([0.5, 0.6, 0.8, 0.7], [1, 1, 1, 1])
    scorer = FrontScorer.of(table)
    cost = pipeline_cost([0.9, 0.85, 0.3, 0.2], scorer, table.flops, supernet_epochs=10)
    assert cost.predicted_front == 1
    assert cost.confirmations == 3  # order 0, 1, 2: the front is found at the third
    assert cost.epochs == 10 + 3 * 20
    assert cost.hv_at_front < 0.95
    exact = pipeline_cost([0.1, 0.2, 0.9, 0.3], scorer, table.flops, supernet_epochs=5)
    assert (exact.confirmations, exact.epochs, exact.hv_at_front) == (1, 25, 1.0)


class _Stage:
    def __init__(self, name: str) -> None:
        self.name = name

    def to_dict(self) -> dict:
        return {"attention": self.name}


class _Spec:
    def __init__(self, *names: str) -> None:
        self.stages = tuple(_Stage(n) for n in names)


def test_option_index_and_log_probability_by_hand():
    options = [[_Stage("none"), _Stage("se")], [_Stage("none"), _Stage("eca"), _Stage("se")]]
    specs = [_Spec("se", "none"), _Spec("none", "se"), _Spec("se", "eca")]
    opt_of = option_index(options, specs)
    assert opt_of == [[1, 0, 1], [0, 2, 1]]
    probs = [[0.25, 0.75], [0.5, 0.3, 0.2]]
    logp = log_probability(probs, opt_of)
    assert logp == pytest.approx(np.log([0.75 * 0.5, 0.25 * 0.2, 0.75 * 0.3]))
    with pytest.raises(ValueError):  # a spec whose choice is not an option
        option_index(options, [_Spec("cbam", "none")])
