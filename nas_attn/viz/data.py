"""Pure data steps of the dashboard: an Optuna study (plus run metadata) -> small data objects.

Split as in ``optuna/visualization/_pareto_front.py``: these functions turn trials into frozen
dataclasses that tests compare exactly; :mod:`nas_attn.viz.plots` draws them. No plotly here.

What the search runner stores per trial (see ``nas_attn/search/searcher.py``, ``outcome.py``,
``optuna_pruner.py``) and how it is read:

- COMPLETE: ``values`` in the order of the run's objectives (``run.json`` ``objectives``).
- PRUNED: no values; ``last_accuracy`` and ``epochs_trained`` user attrs.
- FAIL: no values; ``fail_reason`` (and ``fail_message``) user attrs.
- every proposal: ``spec`` (canonical spec as JSON), ``spec_hash``, the costs computed before
  training (``flops``, ``params``, ``latency_ms``) as user attrs;
- per-epoch values: ``intermediate`` = ``{"<epoch>": [accuracy, cost]}`` (or Optuna's own
  intermediate values of a single-objective study).

Decisions (documented in docs/dashboard.md):

- The plotted accuracy is ``val_accuracy`` (else the first maximised objective); the plotted cost
  is the first other objective (else the ``flops`` attr). A PRUNED trial is drawn at its
  ``last_accuracy`` (partly trained, never on the front); a trial without an accuracy (FAIL) is
  drawn on a strip under the plot at its cost; a trial without a cost is only counted.
- The front is the run's front (:func:`nas_attn.objectives.pareto_front`: COMPLETE trials, one
  per architecture, reused duplicates left out), over all the run's objectives.
- The hypervolume is the normalised one of the progress line and ``load_run``, against the
  run's recorded reference point (:mod:`nas_attn.objectives`).
- Per-epoch values: the trial's ``intermediate`` attr, else Optuna's intermediate values, else
  a curve handed in by the loader (the Ray results of the run folder, see
  :func:`nas_attn.viz.dashboard.ray_curves`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_attn.objectives import ACCURACY, COMPLETE, COSTS, FLOPS, Entry, Objective
from nas_attn.objectives import is_finite_number as _finite
from nas_attn.objectives import objectives_of as _objectives_of
from nas_attn.viz.describe import NO_ATTENTION, describe_spec, hover_text, stage_modules

PRUNED, FAIL, RUNNING = "PRUNED", "FAIL", "RUNNING"
FINISHED = (COMPLETE, PRUNED, FAIL)
INTERMEDIATE = "intermediate"


@dataclass(frozen=True)
class TrialRecord:
    """One Optuna trial, in the terms the dashboard uses."""

    number: int
    state: str
    values: Mapping[str, float] | None  # objective -> value (COMPLETE only)
    accuracy: float | None  # COMPLETE: objective value; PRUNED: last_accuracy
    cost: float | None  # the plotted cost objective (value, else the user attr)
    epochs: int | None
    fail_reason: str | None
    spec: Mapping[str, Any] | None
    spec_hash: str | None
    curve: tuple[tuple[int, float], ...] = ()
    seconds: float | None = None
    reused: bool = False
    attrs: Mapping[str, Any] = field(default_factory=dict)  # costs + objectives by name


# -- objectives and records ---------------------------------------------------------------


def objectives_of(study: Any, info: Mapping[str, Any] | None = None) -> tuple[Objective, ...]:
    """The run's objectives: ``run.json`` first, else the study's ``objectives`` attr."""
    if info and info.get("objectives"):
        return _objectives_of(info["objectives"])
    names = study.user_attrs.get("objectives") or [
        f"objective_{i}" for i in range(len(study.directions))]
    dirs = [d.name.lower() for d in study.directions]
    return tuple(Objective(n, d) for n, d in zip(names, dirs, strict=True))


def plotted_axes(objectives: Sequence[Objective]) -> tuple[Objective, Objective]:
    """``(accuracy, cost)``: the two objectives the Pareto plot shows (see module docstring)."""
    acc = next((o for o in objectives if o.name == ACCURACY), None)
    acc = acc or next((o for o in objectives if o.direction == "maximize"), None)
    acc = acc or Objective(ACCURACY, "maximize")
    cost = next((o for o in objectives if o.name != acc.name), None)
    return acc, cost or Objective(FLOPS, "minimize")


def _spec(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        try:
            out = json.loads(raw)
        except json.JSONDecodeError:
            return None
        return out if isinstance(out, dict) else None
    return None


def _curve(user_attrs: Mapping[str, Any], intermediate: Mapping[int, float]) -> tuple:
    raw = user_attrs.get(INTERMEDIATE)
    points: list[tuple[int, float]] = []
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            acc = v[0] if isinstance(v, list | tuple) and v else v
            if _finite(acc):
                points.append((int(k), float(acc)))
    elif intermediate:
        points = [(int(k), float(v)) for k, v in intermediate.items() if _finite(v)]
    return tuple(sorted(points))


def record_of(trial: Any, objectives: Sequence[Objective],
              curve: Sequence[tuple[int, float]] = ()) -> TrialRecord:
    """A :class:`TrialRecord` from an Optuna ``FrozenTrial``; ``curve`` (per-epoch accuracy
    from elsewhere, e.g. Ray's results) is used when the trial stores none itself."""
    acc_obj, cost_obj = plotted_axes(objectives)
    ua = trial.user_attrs
    state = trial.state.name
    values = None
    if state == COMPLETE and trial.values is not None:
        values = {o.name: float(v) for o, v in zip(objectives, trial.values, strict=False)}
    attrs: dict[str, Any] = {k: float(ua[k]) for k in COSTS if _finite(ua.get(k))}
    attrs.update(values or {})
    accuracy = None
    if values is not None and acc_obj.name in values:
        accuracy = values[acc_obj.name]
    elif state == PRUNED and _finite(ua.get("last_accuracy")):
        accuracy = float(ua["last_accuracy"])
    cost = attrs.get(cost_obj.name)
    epochs = ua.get("epochs_trained")
    seconds = ua.get("train_seconds")
    if not _finite(seconds) and trial.duration is not None:
        seconds = trial.duration.total_seconds()
    return TrialRecord(
        number=trial.number, state=state, values=values, accuracy=accuracy, cost=cost,
        epochs=int(epochs) if _finite(epochs) else None,
        fail_reason=ua.get("fail_reason") if state == FAIL else None,
        spec=_spec(ua.get("spec")), spec_hash=ua.get("spec_hash"),
        curve=_curve(ua, trial.intermediate_values) or tuple(sorted(curve)),
        seconds=float(seconds) if _finite(seconds) else None,
        reused=bool(ua.get("reused", False)), attrs=attrs,
    )


def records(study: Any, objectives: Sequence[Objective],
            curves: Mapping[int, Sequence[tuple[int, float]]] | None = None
            ) -> list[TrialRecord]:
    """Every trial of the study, by number (RUNNING/WAITING ones included: tables only).
    ``curves``: per-epoch accuracy by trial number for trials that store none."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    curves = curves or {}
    return [record_of(t, objectives, curves.get(t.number, ())) for t in trials]


def state_counts(recs: Iterable[TrialRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        out[r.state] = out.get(r.state, 0) + 1
    return out


# -- Pareto plot --------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    number: int
    state: str
    x: float | None  # cost
    y: float | None  # accuracy
    text: str


@dataclass(frozen=True)
class ParetoData:
    x: Objective
    y: Objective
    points: tuple[Point, ...]  # finished trials with a cost, by number
    front: tuple[int, ...]  # trial numbers on the front, by increasing cost
    unplaced: tuple[int, ...]  # finished trials without a cost (counted, not drawn)


def entries(recs: Iterable[TrialRecord], objectives: Sequence[Objective]) -> list[Entry]:
    """The records as :class:`nas_attn.objectives.Entry` rows (values in objective order)."""
    out = []
    for r in recs:
        values = None
        if r.values is not None and all(o.name in r.values for o in objectives):
            values = tuple(r.values[o.name] for o in objectives)
        out.append(Entry(r.number, r.state, values, r.spec_hash, r.reused))
    return out


def pareto_data(recs: Sequence[TrialRecord], objectives: Sequence[Objective]) -> ParetoData:
    from nas_attn.objectives import pareto_front

    acc, cost = plotted_axes(objectives)
    done = [r for r in recs if r.state in FINISHED]
    points = tuple(Point(r.number, r.state, r.cost, r.accuracy,
                         hover_text(r, acc.name, cost.name)) for r in done if r.cost is not None)
    unplaced = tuple(r.number for r in done if r.cost is None)
    on = {e.number for e in pareto_front(entries(recs, objectives),
                                         [o.direction for o in objectives])}
    front = tuple(p.number for p in sorted((p for p in points if p.number in on),
                                           key=lambda p: (p.x, p.y, p.number)))
    return ParetoData(cost, acc, points, front, unplaced)


# -- hypervolume --------------------------------------------------------------------------


@dataclass(frozen=True)
class HypervolumeData:
    objectives: tuple[Objective, ...]
    reference: tuple[float, ...]
    numbers: tuple[int, ...]  # finished trials, by number
    epochs: tuple[int, ...]  # cumulative epochs trained after each of them
    seconds: tuple[float, ...]  # cumulative training seconds after each of them
    hypervolume: tuple[float, ...]  # normalised, of the front of the trials up to each


def hypervolume_data(recs: Sequence[TrialRecord], objectives: Sequence[Objective],
                     reference: Sequence[float] | None = None) -> HypervolumeData:
    """The run's hypervolume after each finished trial, against ``reference`` (the run's
    recorded point; without one, the rule of :func:`nas_attn.objectives.reference_point`
    applied to the records, in trial-number order)."""
    from nas_attn.objectives import reference_point, summarize_front

    objs = tuple(objectives)
    ref = tuple(reference) if reference is not None else reference_point(
        objs, {}, entries(recs, objs))
    done = [r for r in recs if r.state in FINISHED]
    if ref is None:
        return HypervolumeData(objs, (), (), (), (), ())
    numbers, epochs, seconds, hv = [], [], [], []
    seen: list[Entry] = []
    e_sum, s_sum = 0, 0.0
    for r, e in zip(done, entries(done, objs), strict=True):
        seen.append(e)
        e_sum += r.epochs or 0
        s_sum += r.seconds or 0.0
        numbers.append(r.number)
        epochs.append(e_sum)
        seconds.append(round(s_sum, 6))
        hv.append(summarize_front(seen, objs, ref).hypervolume or 0.0)
    return HypervolumeData(objs, ref, tuple(numbers), tuple(epochs), tuple(seconds), tuple(hv))


# -- attribution --------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionData:
    """Mean accuracy/cost of COMPLETE trials per (stage, position) row and module column.

    Row ``stage<i> · <position>`` holds the trials with an attention module at that position of
    stage i; the ``none`` column of every row of stage i repeats that stage's no-attention
    trials (the baseline to compare against; a stage that never has attention gets a row
    ``stage<i> · (none)``). Rows ``stage<i> · conv`` / ``· fusion`` appear
    when any trial replaces a conv or fuses a stage. ``None`` where no trial falls in a cell.
    """

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    accuracy: tuple[tuple[float | None, ...], ...]
    cost: tuple[tuple[float | None, ...], ...]
    count: tuple[tuple[int, ...], ...]
    cost_name: str


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def attribution_data(recs: Sequence[TrialRecord], objectives: Sequence[Objective]
                     ) -> AttributionData:
    from nas_attn.arch import POSITIONS

    _, cost = plotted_axes(objectives)
    done = [r for r in recs if r.state == COMPLETE and r.spec and r.accuracy is not None]
    cells: dict[tuple[str, str], list[TrialRecord]] = {}
    baseline: dict[int, list[TrialRecord]] = {}
    row_keys: set[tuple[int, int, str]] = set()
    cols: set[str] = set()
    for r in done:
        for i, st in enumerate(r.spec.get("stages") or []):
            m = stage_modules(st)
            if m["attention"] == NO_ATTENTION:
                baseline.setdefault(i, []).append(r)
            else:
                pos = m["position"]
                rank = POSITIONS.index(pos) if pos in POSITIONS else len(POSITIONS)
                row_keys.add((i, rank, f"stage{i} · {pos}"))
                cells.setdefault((f"stage{i} · {pos}", m["attention"]), []).append(r)
                cols.add(m["attention"])
            for slot, plain, rank in (("conv", "standard", 90), ("fusion", "none", 91)):
                if m[slot] != plain:
                    row_keys.add((i, rank, f"stage{i} · {slot}"))
                    cols.add(f"{slot}:{m[slot]}")
                    cells.setdefault((f"stage{i} · {slot}", f"{slot}:{m[slot]}"), []).append(r)
    for i in baseline:
        cols.add(NO_ATTENTION)
        if not any(k[0] == i and k[1] < 90 for k in row_keys):
            row_keys.add((i, -1, f"stage{i} · (none)"))
    ordered = sorted(row_keys)
    rows = tuple(k[2] for k in ordered)
    col_t = tuple(sorted(cols, key=lambda c: (c != NO_ATTENTION, ":" in c, c)))
    acc_m, cost_m, n_m = [], [], []
    for stage, _, row in ordered:
        a_row, c_row, n_row = [], [], []
        for col in col_t:
            if col == NO_ATTENTION:
                rs = baseline.get(stage, []) if not row.endswith(("conv", "fusion")) else []
            else:
                rs = cells.get((row, col), [])
            a_row.append(_mean([r.accuracy for r in rs if r.accuracy is not None]))
            c_row.append(_mean([r.cost for r in rs if r.cost is not None]))
            n_row.append(len(rs))
        acc_m.append(tuple(a_row))
        cost_m.append(tuple(c_row))
        n_m.append(tuple(n_row))
    return AttributionData(rows, col_t, tuple(acc_m), tuple(cost_m), tuple(n_m), cost.name)


# -- parallel coordinates -----------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    label: str
    values: tuple[float, ...]
    ticktext: tuple[str, ...] | None = None  # categorical: values index into ticktext


@dataclass(frozen=True)
class ParallelData:
    numbers: tuple[int, ...]
    dimensions: tuple[Dimension, ...]
    color: tuple[float, ...]  # accuracy
    color_name: str


def parallel_data(recs: Sequence[TrialRecord], objectives: Sequence[Objective]) -> ParallelData:
    """COMPLETE trials: one categorical axis per stage decision that varies, then cost and
    accuracy; lines coloured by accuracy."""
    acc, cost = plotted_axes(objectives)
    done = [r for r in recs if r.state == COMPLETE and r.spec and r.accuracy is not None]
    n_stages = max((len(r.spec.get("stages") or []) for r in done), default=0)
    dims: list[Dimension] = []
    for i in range(n_stages):
        for key in ("attention", "position", "conv", "fusion"):
            labels = []
            for r in done:
                stages = r.spec.get("stages") or []
                labels.append(stage_modules(stages[i])[key] if i < len(stages) else "-")
            cats = tuple(sorted(set(labels)))
            if len(cats) > 1:
                dims.append(Dimension(f"stage{i} {key}",
                                      tuple(float(cats.index(v)) for v in labels), cats))
    dims.append(Dimension(cost.name, tuple(float(r.cost) if r.cost is not None else math.nan
                                           for r in done)))
    dims.append(Dimension(acc.name, tuple(float(r.accuracy) for r in done)))
    return ParallelData(tuple(r.number for r in done), tuple(dims),
                        tuple(float(r.accuracy) for r in done), acc.name)


# -- learning curves ----------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    number: int
    state: str
    epochs: tuple[int, ...]
    accuracy: tuple[float, ...]
    stopped_at: int | None  # PRUNED: the epoch early stopping ended it
    stop_accuracy: float | None


def curves_data(recs: Sequence[TrialRecord]) -> tuple[Curve, ...]:
    """One curve per COMPLETE/PRUNED trial with per-epoch values or a recorded stop."""
    out = []
    for r in recs:
        if r.state not in (COMPLETE, PRUNED):
            continue
        stop = r.epochs if r.state == PRUNED else None
        stop_acc = r.accuracy if r.state == PRUNED else None
        if not r.curve and stop is None:
            continue
        if stop is not None and stop_acc is None:
            stop_acc = dict(r.curve).get(stop)
        out.append(Curve(r.number, r.state, tuple(e for e, _ in r.curve),
                         tuple(a for _, a in r.curve), stop, stop_acc))
    return tuple(out)


# -- trial table --------------------------------------------------------------------------

TABLE_COLUMNS = ("number", "state", "accuracy", "cost", "epochs", "seconds", "fail_reason",
                 "architecture", "spec_hash")


def table_rows(recs: Sequence[TrialRecord], front: Iterable[int] = ()) -> list[dict[str, Any]]:
    """One row per trial with raw (sortable) values; ``front`` marks Pareto-optimal trials."""
    on_front = set(front)
    rows = []
    for r in recs:
        arch = describe_spec(r.spec)
        rows.append({
            "number": r.number,
            "state": r.state + (" *" if r.number in on_front else ""),
            "accuracy": r.accuracy, "cost": r.cost, "epochs": r.epochs,
            "seconds": None if r.seconds is None else round(r.seconds, 3),
            "fail_reason": r.fail_reason or "",
            "architecture": "; ".join(arch[1:]) if len(arch) > 1 else arch[0],
            "spec_hash": r.spec_hash or "",
        })
    return rows
