"""Pareto mathematics over objective vectors (pure numpy).

Every function takes the points as an ``(n, m)`` array-like (one row per solution, one column
per objective) and the ``directions`` of the ``m`` objectives (``"maximize"``/``"minimize"``,
``"max"``/``"min"`` accepted). Internally every objective is turned into one to minimise by
negating the maximised columns; results are always returned in the caller's terms (indices,
distances, volumes).

References
- Dominance, fast non-dominated sorting and crowding distance: Deb et al., "A fast and elitist
  multiobjective genetic algorithm: NSGA-II", IEEE TEVC 6(2), 2002.
- Hypervolume: Zitzler & Thiele 1998; the exact algorithm here is the dimension sweep
  ("hypervolume by slicing objectives", While et al., IEEE TEVC 10(1), 2006): an O(n log n)
  sweep in 2-D and recursive slicing along the last objective above that (exact for any m,
  meant for the few hundred points a search produces).
- Knee point: the point of the first front farthest from the line (hyperplane) through the
  extreme points, after normalising each objective to [0, 1] over the front (Das 1999,
  "On characterizing the knee of the Pareto curve"; Branke et al. 2004; Zhang et al. 2015,
  KnEA). Only points on the ideal side of that line count as bulging towards the knee.
- IGD+: Ishibuchi et al., "Modified distance calculation in generational distance and inverted
  generational distance", EMO 2015 (arXiv-free; Pareto-compliant variant of IGD).

Conventions
- NaN anywhere raises ``ValueError`` (``ConfigError``, a subclass) naming the row. Dominance and
  sorting accept +-inf; the metrics (crowding, hypervolume, knee, IGD+) require finite values.
- Empty input: ``non_dominated_sort`` -> ``[]``, masks/crowding/contributions -> empty arrays,
  ``hypervolume`` -> 0.0; ``knee_point`` and ``igd_plus`` raise (undefined on an empty set).
- Duplicates never dominate each other, so they share a front; crowding distance gives identical
  points the same value; each copy of a duplicated point has hypervolume contribution 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas_attn.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")
_ALIASES = {"maximize": 1.0, "max": 1.0, "minimize": -1.0, "min": -1.0}

__all__ = [
    "DIRECTIONS",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "hypervolume_contributions",
    "igd_plus",
    "knee_point",
    "non_dominated_sort",
    "pareto_front_mask",
]


def _signs(directions: Sequence[str], m: int | None = None) -> np.ndarray:
    """+1 for a maximised objective, -1 for a minimised one (multiply to get minimise form)."""
    if isinstance(directions, str):
        raise ConfigError(
            "directions", directions, "expected one direction per objective", DIRECTIONS
        )
    out = []
    for i, d in enumerate(directions):
        key = str(getattr(d, "name", d)).lower()  # also accepts optuna.study.StudyDirection
        if key not in _ALIASES:
            raise ConfigError(f"directions[{i}]", d, "unknown direction", DIRECTIONS)
        out.append(-_ALIASES[key])  # maximise -> negate
    if m is not None and len(out) != m:
        raise ConfigError(
            "directions", list(directions), f"expected {m} directions, one per objective column"
        )
    if not out:
        raise ConfigError("directions", list(directions), "at least one objective is needed")
    return np.asarray(out, dtype=float)


def _matrix(
    points: object, name: str = "points", m: int | None = None, finite: bool = False
) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, m or 0)
    if arr.ndim != 2:
        raise ConfigError(name, None, f"expected an (n, m) array, got shape {arr.shape}")
    if m is not None and arr.shape[0] and arr.shape[1] != m:
        raise ConfigError(name, None, f"expected {m} objective columns, got {arr.shape[1]}")
    bad = np.isnan(arr).any(axis=1) if not finite else ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "NaN" if not finite else "a non-finite value"
        raise ConfigError(name, arr[row].tolist(), f"row {row} contains {what}")
    return arr


def _to_min(
    points: object, directions: Sequence[str], name: str = "points", finite: bool = False
) -> np.ndarray:
    signs = _signs(directions)
    arr = _matrix(points, name, m=len(signs), finite=finite)
    if arr.shape[0] == 0:
        return arr.reshape(0, len(signs))
    return arr * signs


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True when ``a`` is no worse than ``b`` in every objective and better in at least one."""
    pa = _to_min([a], directions, "a")[0]
    pb = _to_min([b], directions, "b")[0]
    return bool(np.all(pa <= pb) and np.any(pa < pb))


def _dominance_matrix(p: np.ndarray) -> np.ndarray:
    """``D[i, j]`` is True when point i dominates point j (minimise form)."""
    n = p.shape[0]
    le = np.ones((n, n), dtype=bool)
    lt = np.zeros((n, n), dtype=bool)
    for k in range(p.shape[1]):
        col = p[:, k]
        le &= col[:, None] <= col[None, :]
        lt |= col[:, None] < col[None, :]
    return le & lt


def non_dominated_sort(points: object, directions: Sequence[str]) -> list[list[int]]:
    """Fronts of ``points`` as lists of row indices, best front first (NSGA-II ranks).

    Memory is O(n^2) booleans (the dominance matrix): fine for the thousands of trials of a
    search, not for millions of points.
    """
    p = _to_min(points, directions)
    n = p.shape[0]
    if n == 0:
        return []
    dom = _dominance_matrix(p)
    count = dom.sum(axis=0)  # how many points dominate each point
    remaining = np.ones(n, dtype=bool)
    fronts: list[list[int]] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (count == 0))
        fronts.append(front.tolist())
        remaining[front] = False
        count = count - dom[front].sum(axis=0)
    return fronts


def pareto_front_mask(points: object, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (the first front)."""
    p = _to_min(points, directions)
    if p.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return ~_dominance_matrix(p).any(axis=0)


def crowding_distance(points: object, directions: Sequence[str] | None = None) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (Deb et al. 2002).

    Per objective, the points are sorted, the two boundary points get ``inf`` and an interior
    point gets the gap between its neighbours divided by the objective's range; the distances
    add up over objectives. An objective whose range is 0 adds nothing. Deviation from the
    textbook version: distances are computed over the distinct points and copied to their
    duplicates, so identical points always get identical distances (the textbook version
    depends on the sort order). Directions do not change the value; pass them to validate the
    column count.
    """
    if directions is not None:
        p = _to_min(points, directions, finite=True)
    else:
        p = _matrix(points, finite=True)
    n = p.shape[0]
    if n == 0:
        return np.zeros(0)
    uniq, inverse = np.unique(p, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    u = uniq.shape[0]
    dist = np.zeros(u)
    if u <= 2:
        dist[:] = np.inf
        return dist[inverse]
    for k in range(uniq.shape[1]):
        order = np.argsort(uniq[:, k], kind="stable")
        col = uniq[order, k]
        span = col[-1] - col[0]
        dist[order[0]] = np.inf
        dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist[inverse]


def _hv_min(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of points strictly below ``ref`` (minimise form)."""
    n, m = p.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - p[:, 0].min())
    if m == 2:
        order = np.lexsort((p[:, 1], p[:, 0]))
        total, y_best = 0.0, ref[1]
        for x, y in p[order]:
            if y < y_best:
                total += (ref[0] - x) * (y_best - y)
                y_best = y
        return float(total)
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    total = 0.0
    for i in range(n):
        upper = p[i + 1, -1] if i + 1 < n else ref[-1]
        depth = upper - p[i, -1]
        if depth > 0:
            total += _hv_min(p[: i + 1, :-1], ref[:-1]) * depth
    return float(total)


def _hv_inputs(
    points: object, ref: Sequence[float], directions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    p = _to_min(points, directions, finite=True)
    signs = _signs(directions)
    r = _matrix([ref], "ref", m=len(signs), finite=True)[0] * signs
    return p, r


def hypervolume(points: object, ref: Sequence[float], directions: Sequence[str]) -> float:
    """Volume of objective space dominated by ``points`` and bounded by the reference point.

    ``ref`` is given in the caller's terms (e.g. accuracy 0.0 and the largest FLOPs allowed for
    ``("maximize", "minimize")``). Points that do not strictly improve on ``ref`` in every
    objective add nothing. Exact for every m (2-D sweep, slicing above).
    """
    p, r = _hv_inputs(points, ref, directions)
    keep = np.all(p < r, axis=1)
    return _hv_min(p[keep], r)


def hypervolume_contributions(
    points: object, ref: Sequence[float], directions: Sequence[str]
) -> np.ndarray:
    """Exclusive hypervolume contribution of each row: HV(all) - HV(all but that row).

    Dominated points and each copy of a duplicated point contribute 0.
    """
    p, r = _hv_inputs(points, ref, directions)
    n = p.shape[0]
    out = np.zeros(n)
    keep = np.all(p < r, axis=1)
    total = _hv_min(p[keep], r)
    for i in np.flatnonzero(keep):
        others = keep.copy()
        others[i] = False
        out[i] = total - _hv_min(p[others], r)
    return np.maximum(out, 0.0)  # clip float round-off


def knee_point(points: object, directions: Sequence[str]) -> int:
    """Row index of the knee of the first front.

    The first front is normalised to [0, 1] per objective (minimise form, over the front's own
    min/max). In 2-D the knee is the front point farthest from the straight line between the
    two extreme points, on the side of the ideal point; after normalisation that line is
    ``x + y = 1``. For m > 2 the hyperplane through the m extreme points (best in one
    objective each) is used, falling back to ``sum(x) = 1`` when the extremes are degenerate.
    When no point bulges towards the ideal point (a straight or concave front, or a front of
    one or two points) the point closest to the ideal point is returned. Remaining ties go to
    the lowest row index.
    """
    p = _to_min(points, directions, finite=True)
    n, m = p.shape
    if n == 0:
        raise ConfigError("points", None, "knee_point needs at least one point")
    front = np.flatnonzero(pareto_front_mask(p, ["minimize"] * m))
    f = p[front]
    lo, hi = f.min(axis=0), f.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (f - lo) / span
    w = np.ones(m)
    if m > 2:
        ext = z[np.argmin(z, axis=0)]  # row k: the point best in objective k
        try:
            cand = np.linalg.solve(ext, np.ones(m))
            if np.all(np.isfinite(cand)) and np.all(cand > 0):
                w = cand
        except np.linalg.LinAlgError:
            pass
    signed = (1.0 - z @ w) / np.linalg.norm(w)  # > 0: towards the ideal point
    eps = 1e-12
    if signed.max() > eps:
        best = np.flatnonzero(signed >= signed.max() - eps)
    else:
        d_ideal = np.linalg.norm(z, axis=1)
        best = np.flatnonzero(d_ideal <= d_ideal.min() + eps)
    return int(front[best].min())


def igd_plus(approx: object, true_front: object, directions: Sequence[str]) -> float:
    """IGD+ of ``approx`` against the reference set ``true_front`` (Ishibuchi et al. 2015).

    For each reference point z, d+(z, a) = sqrt(sum_k max(a_k - z_k, 0)^2) in minimise form,
    taking the nearest a; IGD+ is the mean over z. 0 means ``approx`` covers the reference set.
    No normalisation: scale objectives beforehand if their units differ by orders of magnitude.
    """
    a = _to_min(approx, directions, "approx", finite=True)
    z = _to_min(true_front, directions, "true_front", finite=True)
    if z.shape[0] == 0:
        raise ConfigError("true_front", None, "IGD+ needs a non-empty reference set")
    if a.shape[0] == 0:
        raise ConfigError("approx", None, "IGD+ needs a non-empty approximation set")
    diff = np.maximum(a[None, :, :] - z[:, None, :], 0.0)
    d = np.sqrt((diff**2).sum(axis=2)).min(axis=1)
    return float(d.mean())
