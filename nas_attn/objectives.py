"""The objectives of a search, the Pareto front of a run and its hypervolume reference point.

One definition each, read by every view of a run: the progress line and closing summary of a
search, ``nas_attn.load_run(RUN).front()``, the dashboard, ``nas-attn export --pick`` and
``nas-attn ablate --trial``.

Objectives
    ``val_accuracy`` is maximised; the costs ``flops``, ``params`` and ``latency_ms`` (computed
    before training) are minimised. A direction is fixed by the metric.

The front of a run (:func:`pareto_front`)
    The non-dominated set of the COMPLETE trials whose objective values are all finite numbers,
    one row per architecture: a trial that reused an earlier trial's result (``reused``) is left
    out, and of several COMPLETE trials with one spec hash only the lowest-numbered one enters.
    PRUNED and FAIL trials never do (a pruned trial's numbers describe a partly trained network).
    Two different architectures with equal values are both on the front.

The hypervolume reference point (:func:`reference_point`)
    0 for a maximised objective (accuracy); for a minimised cost the space's whole-network
    limit (``max_flops`` / ``max_params``; for the synthetic problem the largest cost of its
    space), else :data:`COST_FACTOR` x the cost of the first COMPLETE trial to finish. It is
    fixed once, the first time it can be computed, and recorded in the study's user attrs
    (:data:`REFERENCE_ATTR`, ``{objective: value}``) by :func:`study_reference`; every reader
    takes the recorded point, and a run recorded before it existed gets the same rule applied to
    its trials. The hypervolume (:func:`normalized_hypervolume`) is the fraction of the box
    between the reference point and the ideal point (accuracy 1, cost 0) that the front
    dominates, in [0, 1]: it only grows as a search improves and compares runs of one study.

Nothing here imports Optuna, pandas or Ray at import time: trials come in as :class:`Entry`
rows, built from Optuna trials (:func:`entries_of_trials`) or a trials table
(:func:`entries_of_frame`); :func:`name_metrics` names a study's objectives for
optuna-dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas_attn.errors import ConfigError

ACCURACY = "val_accuracy"
FLOPS, PARAMS, LATENCY = "flops", "params", "latency_ms"
COSTS = (FLOPS, PARAMS, LATENCY)  # known before training
OBJECTIVES = {ACCURACY: "maximize", FLOPS: "minimize", PARAMS: "minimize",
              LATENCY: "minimize"}
DIRECTIONS = ("maximize", "minimize")
COMPLETE = "COMPLETE"
REFERENCE_ATTR = "hv_reference"
COST_FACTOR = 2.0
_IDEAL = {"maximize": 1.0, "minimize": 0.0}  # accuracy 1, cost 0


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name and its direction (``maximize`` | ``minimize``)."""

    name: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"objective {self.name}.direction", self.direction,
                              "unknown direction", DIRECTIONS)

    @property
    def is_cost(self) -> bool:
        return self.direction == "minimize"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


DEFAULT_OBJECTIVES = (Objective(ACCURACY, "maximize"), Objective(FLOPS, "minimize"))


def objectives_of(pairs: Iterable[Any]) -> tuple[Objective, ...]:
    """Objectives from ``run.json``'s ``[[name, direction], ...]``, mappings or Objectives."""
    out = []
    for p in pairs:
        if isinstance(p, Objective):
            out.append(p)
        elif isinstance(p, Mapping):
            out.append(Objective(str(p["name"]), str(p["direction"])))
        else:
            name, direction = p
            out.append(Objective(str(name), str(direction)))
    return tuple(out)


def is_finite_number(x: Any) -> bool:
    """A real int or float (not a bool) that is neither NaN nor infinite; never raises (an int
    too large for a float is finite). numpy scalars count as numbers."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        if type(x).__module__ != "numpy" or not hasattr(x, "item"):
            return False
        x = x.item()
        if isinstance(x, bool) or not isinstance(x, int | float):
            return False
    return isinstance(x, int) or math.isfinite(x)


# -- the front ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One trial, as the front and the reference point see it. ``finished``: a sortable
    completion time (ISO text), "" when unknown."""

    number: int
    state: str
    values: tuple[Any, ...] | None
    spec_hash: str | None = None
    reused: bool = False
    finished: str = ""


def candidates(entries: Iterable[Entry], m: int) -> list[Entry]:
    """The trials that may enter the front: COMPLETE, ``m`` finite values, not reused, the
    lowest-numbered trial of each spec hash; by number."""
    out: list[Entry] = []
    seen: set[str] = set()
    for e in sorted(entries, key=lambda e: e.number):
        if e.state != COMPLETE or e.reused or e.values is None or len(e.values) != m:
            continue
        if not all(is_finite_number(v) for v in e.values):
            continue
        if e.spec_hash:
            if e.spec_hash in seen:
                continue
            seen.add(e.spec_hash)
        out.append(e)
    return out


def pareto_front(entries: Iterable[Entry], directions: Sequence[str]) -> list[Entry]:
    """The front of a run (see the module docstring), by trial number."""
    from nas_attn.pareto import pareto_front_mask

    done = candidates(entries, len(directions))
    if not done:
        return []
    mask = pareto_front_mask([[float(v) for v in e.values or ()] for e in done],
                             list(directions))
    return [e for e, on in zip(done, mask, strict=True) if on]


# -- the reference point and the hypervolume ------------------------------------------------


def reference_point(objectives: Sequence[Objective], limits: Mapping[str, float],
                    entries: Iterable[Entry]) -> tuple[float, ...] | None:
    """The hypervolume reference point by the rule of the module docstring; None while a cost
    without a limit has no COMPLETE trial to anchor on."""
    done = candidates(entries, len(objectives))
    first = min(done, key=lambda e: (e.finished or "~", e.number), default=None)
    ref: list[float] = []
    for j, o in enumerate(objectives):
        if o.direction == "maximize":
            ref.append(0.0)
        elif limits.get(o.name):
            ref.append(float(limits[o.name]))
        elif first is not None and first.values is not None:
            ref.append(COST_FACTOR * float(first.values[j]))
        else:
            return None
    return tuple(ref)


def recorded_reference(attrs: Mapping[str, Any], objectives: Sequence[Objective]
                       ) -> tuple[float, ...] | None:
    """The reference point recorded in a study's user attrs, None when absent or incomplete."""
    raw = attrs.get(REFERENCE_ATTR)
    if not isinstance(raw, Mapping) or not all(is_finite_number(raw.get(o.name))
                                               for o in objectives):
        return None
    return tuple(float(raw[o.name]) for o in objectives)


def study_reference(study: Any, objectives: Sequence[Objective],
                    limits: Mapping[str, float] | None = None, record: bool = True
                    ) -> tuple[float, ...] | None:
    """The study's reference point: the recorded one, else computed by the rule (and recorded,
    with ``record``, once it can be computed)."""
    ref = recorded_reference(study.user_attrs, objectives)
    if ref is not None:
        return ref
    ref = reference_point(objectives, limits or {}, entries_of_trials(
        study.get_trials(deepcopy=False)))
    if ref is not None and record:
        study.set_user_attr(REFERENCE_ATTR, {o.name: v for o, v in
                                             zip(objectives, ref, strict=True)})
    return ref


def name_metrics(study: Any, objectives: Sequence[Objective]) -> None:
    """Name the study's objectives (``Study.set_metric_names``), so optuna-dashboard labels
    them ``val_accuracy``/``flops`` instead of 0 and 1; also on a study created before."""
    import warnings

    import optuna

    names = [o.name for o in objectives]
    with warnings.catch_warnings():  # the API is marked experimental since optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != names:
            study.set_metric_names(names)


def normalized_hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str],
                           reference: Sequence[float]) -> float:
    """The fraction of the box between ``reference`` and the ideal point (1 for a maximised
    objective, 0 for a minimised one) that ``points`` dominate; 0.0 without points."""
    from nas_attn.pareto import hypervolume

    if not len(points):
        return 0.0
    box = 1.0
    for r, d in zip(reference, directions, strict=True):
        box *= abs(_IDEAL[d] - r) or 1.0
    return float(hypervolume(points, list(reference), list(directions))) / box


@dataclass(frozen=True)
class FrontSummary:
    numbers: tuple[int, ...]  # trials on the front, by number
    hypervolume: float | None  # normalised; None without a reference point


def summarize_front(entries: Sequence[Entry], objectives: Sequence[Objective],
                    reference: Sequence[float] | None) -> FrontSummary:
    directions = [o.direction for o in objectives]
    front = pareto_front(entries, directions)
    hv = None
    if reference is not None:
        hv = normalized_hypervolume([[float(v) for v in e.values or ()] for e in front],
                                    directions, reference)
    return FrontSummary(tuple(e.number for e in front), hv)


def reference_text(objectives: Sequence[Objective], reference: Sequence[float] | None) -> str:
    """``"val_accuracy 0, flops 4.1e+07"``; "" without a reference point."""
    if reference is None:
        return ""
    return ", ".join(f"{o.name} {v:.4g}" for o, v in zip(objectives, reference, strict=True))


# -- entries from Optuna trials and from a trials table -----------------------------------


def entries_of_trials(trials: Iterable[Any]) -> list[Entry]:
    """Entries of Optuna ``FrozenTrial`` objects."""
    out = []
    for t in trials:
        ua = t.user_attrs
        done = getattr(t, "datetime_complete", None)
        out.append(Entry(int(t.number), t.state.name, tuple(t.values) if t.values else None,
                         ua.get("spec_hash"), ua.get("reused") is True,
                         done.isoformat(sep=" ") if done is not None else ""))
    return out


def entries_of_frame(df: Any, names: Sequence[str]) -> list[Entry]:
    """Entries of a trials table (``number``, ``state``, one column per objective, and when
    present ``spec_hash``, ``reused``, ``datetime_complete``; read back from CSV or not)."""
    cols = set(df.columns)
    out = []
    for row in df.to_dict("records"):
        values = tuple(row.get(n) for n in names) if all(n in cols for n in names) else None
        h = row.get("spec_hash") if "spec_hash" in cols else None
        done = row.get("datetime_complete") if "datetime_complete" in cols else None
        out.append(Entry(int(row["number"]), str(row["state"]), values,
                         h if isinstance(h, str) and h else None,
                         str(row.get("reused")) == "True",
                         str(done) if isinstance(done, str) or hasattr(done, "isoformat")
                         else ""))
    return out
