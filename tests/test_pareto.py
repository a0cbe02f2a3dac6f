"""Pareto mathematics against hand-computed values and an independent brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nas_attn.errors import ConfigError
from nas_attn.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_contributions,
    igd_plus,
    knee_point,
    non_dominated_sort,
    pareto_front_mask,
)

MM = ("minimize", "minimize")
AF = ("maximize", "minimize")  # accuracy, FLOPs


def _hv_inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Independent check (minimise form): union of boxes [p, ref] by inclusion-exclusion."""
    total = 0.0
    n = len(points)
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


def test_dominates_respects_directions():
    assert dominates((0.9, 10), (0.8, 10), AF)
    assert not dominates((0.8, 10), (0.9, 10), AF)
    assert dominates((0.9, 5), (0.8, 10), AF)
    assert not dominates((0.9, 10), (0.8, 5), AF)  # a trade-off
    assert not dominates((0.9, 10), (0.9, 10), AF)  # equal points


def test_non_dominated_sort_constructed_set():
    pts = [(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (4, 2), (2, 3)]
    fronts = non_dominated_sort(pts, MM)
    assert [sorted(f) for f in fronts] == [[0, 1, 2, 6], [3, 5], [4]]
    assert pareto_front_mask(pts, MM).tolist() == [True, True, True, False, False, False, True]


def test_non_dominated_sort_maximize_flips():
    pts = [(0.9, 10), (0.8, 12), (0.7, 1)]
    assert non_dominated_sort(pts, AF) == [[0, 2], [1]]
    assert non_dominated_sort(pts, ("minimize", "maximize")) == [[1, 2], [0]]


def test_empty_inputs():
    assert non_dominated_sort([], MM) == []
    assert pareto_front_mask([], MM).shape == (0,)
    assert crowding_distance([]).shape == (0,)
    assert hypervolume([], (1, 1), MM) == 0.0
    assert hypervolume_contributions([], (1, 1), MM).shape == (0,)
    with pytest.raises(ValueError):
        knee_point([], MM)
    with pytest.raises(ValueError):
        igd_plus([], [(0, 0)], MM)
    with pytest.raises(ValueError):
        igd_plus([(0, 0)], [], MM)


@pytest.mark.parametrize(
    "fn",
    [
        lambda p: non_dominated_sort(p, MM),
        lambda p: pareto_front_mask(p, MM),
        lambda p: crowding_distance(p),
        lambda p: hypervolume(p, (9, 9), MM),
        lambda p: knee_point(p, MM),
        lambda p: igd_plus(p, [(0, 0)], MM),
    ],
)
def test_nan_rejected_naming_the_row(fn):
    with pytest.raises(ValueError, match="row 1"):
        fn([(1.0, 2.0), (float("nan"), 1.0)])


def test_bad_directions_and_shapes():
    with pytest.raises(ConfigError) as err:
        non_dominated_sort([(1, 2)], ("maximize", "upwards"))
    assert err.value.choices == ["maximize", "minimize"]
    with pytest.raises(ConfigError, match="columns"):
        non_dominated_sort([(1, 2, 3)], MM)
    with pytest.raises(ConfigError):
        non_dominated_sort([(1, 2)], "maximize")


def test_hypervolume_2d_hand_computed():
    # staircase: 3*1 + 2*1 + 1*1
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4), MM) == pytest.approx(6.0)
    # dominated point, duplicate and a point beyond the reference add nothing
    pts = [(1, 3), (2, 2), (3, 1), (3, 3), (2, 2), (5, 0)]
    assert hypervolume(pts, (4, 4), MM) == pytest.approx(6.0)
    # accuracy (max) vs FLOPs (min), reference accuracy 0, FLOPs 4: 0.9*1 + 0.8*1 + 0.5*1
    assert hypervolume([(0.9, 3), (0.8, 2), (0.5, 1)], (0.0, 4), AF) == pytest.approx(2.2)


def test_hypervolume_3d_hand_computed():
    assert hypervolume([(1, 1, 1)], (2, 2, 2), ("minimize",) * 3) == pytest.approx(1.0)
    # three boxes of 4, pairwise overlaps of 2, triple overlap of 1: 12 - 6 + 1
    pts = [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    assert hypervolume(pts, (2, 2, 2), ("minimize",) * 3) == pytest.approx(7.0)
    # mixed directions: maximise the first objective, reference 0
    pts = [(2, 0, 1), (2, 1, 0), (1, 0, 0)]
    dirs = ("maximize", "minimize", "minimize")
    assert hypervolume(pts, (0, 2, 2), dirs) == pytest.approx(7.0)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(m):
    rng = np.random.default_rng(m)
    for _ in range(5):
        pts = rng.random((7, m))
        ref = np.full(m, 1.1)
        assert hypervolume(pts, ref, ("minimize",) * m) == pytest.approx(
            _hv_inclusion_exclusion(pts, ref), rel=1e-9
        )


def test_hypervolume_contributions():
    contrib = hypervolume_contributions([(1, 3), (2, 2), (3, 1), (3, 3), (2, 2)], (4, 4), MM)
    # exclusive boxes of 1 each; the dominated point and both copies of (2, 2) give 0
    assert contrib.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0, 0.0])
    contrib = hypervolume_contributions([(1, 3), (2, 2), (3, 1)], (4, 4), MM)
    assert contrib.tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_crowding_distance_hand_computed():
    d = crowding_distance([(1, 5), (2, 3), (4, 1)])
    assert math.isinf(d[0]) and math.isinf(d[2])
    assert d[1] == pytest.approx((4 - 1) / 3 + (5 - 1) / 4)
    d = crowding_distance([(0, 4), (1, 2), (3, 1), (4, 0)])
    assert d[1] == pytest.approx(3 / 4 + 3 / 4)
    assert d[2] == pytest.approx(3 / 4 + 2 / 4)
    assert crowding_distance([(1, 1), (2, 2)]).tolist() == [math.inf, math.inf]


def test_crowding_distance_duplicates_share_a_value():
    d = crowding_distance([(0, 4), (1, 2), (1, 2), (4, 0)])
    assert d[1] == d[2] == pytest.approx(4 / 4 + 4 / 4)
    # a zero-range objective adds nothing
    d = crowding_distance([(0, 1), (1, 1), (3, 1)])
    assert d[1] == pytest.approx(3 / 3)


def test_knee_point_2d():
    pts = [(0, 10), (1, 3), (5, 1), (10, 0)]
    assert knee_point(pts, MM) == 1
    # accuracy vs FLOPs with a dominated point that must never be the knee
    pts = [(0.9, 100), (0.85, 20), (0.5, 10), (0.1, 0), (0.8, 50)]
    assert knee_point(pts, AF) == 1
    # a concave front (no bulge): closest to the ideal point, lowest index on ties
    assert knee_point([(0, 1), (0.8, 0.8), (1, 0)], MM) == 0
    assert knee_point([(3, 3)], MM) == 0


def test_knee_point_3d():
    pts = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)]
    assert knee_point(pts, ("minimize",) * 3) == 3


def test_igd_plus_known_values():
    ref = [(0, 1), (1, 0)]
    assert igd_plus(ref, ref, MM) == 0.0
    assert igd_plus([(-1, -1)], ref, MM) == 0.0  # dominating the reference set costs nothing
    # d+ to (0, 1): sqrt(0.5^2 + 0.5^2); to (1, 0): sqrt(0 + 1.5^2)
    expected = (math.sqrt(0.5) + 1.5) / 2
    assert igd_plus([(0.5, 1.5)], ref, MM) == pytest.approx(expected)
    # the same in accuracy/FLOPs terms (accuracy negated internally)
    assert igd_plus([(-0.5, 1.5)], [(0, 1), (-1, 0)], AF) == pytest.approx(expected)
