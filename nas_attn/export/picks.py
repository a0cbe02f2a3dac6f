"""Which trials of a search to export: ``--pick`` parsing and selection (pure functions).

Picks::

    knee            the knee of the Pareto front (nas_attn.pareto.knee_point)
    max-accuracy    the front's most accurate trial (ties: fewer FLOPs, then lower number)
    min-flops       the front's cheapest trial (ties: more accurate, then lower number)
    flops<=X        the most accurate COMPLETE trial with at most X FLOPs (X: 4e7, 40M, 1.5G)
    trial=N         trial number N, which must be COMPLETE
    front           every trial of the front, cheapest first

They work on the trials table of a run (one row per trial) with the columns ``number``,
``state``, one column per objective (by default ``val_accuracy`` maximised and ``flops``
minimised), ``spec_hash``, ``reused`` and the spec as JSON in ``spec`` or ``spec_json``. The
front is the run's (:func:`nas_attn.objectives.pareto_front`): COMPLETE trials with finite
objective values, one per architecture (a trial that reused an earlier result is left out);
pruned trials were stopped early, so their numbers describe a partly trained network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import ACCURACY, FLOPS, is_finite_number
from nas_attn.objectives import DEFAULT_OBJECTIVES as _DEFAULT

PICKS = ("knee", "max-accuracy", "min-flops", "flops<=X", "trial=N", "front")
DEFAULT_OBJECTIVES = tuple((o.name, o.direction) for o in _DEFAULT)
SPEC_COLUMNS = ("spec_json", "spec")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_FLOPS_RE = re.compile(r"^flops\s*<=\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)$", re.I)
_TRIAL_RE = re.compile(r"^trial\s*=\s*([0-9]+)$", re.I)


@dataclass(frozen=True)
class Pick:
    """A parsed pick: ``kind`` is one of knee, max-accuracy, min-flops, flops, trial, front."""

    kind: str
    value: float | int | None = None
    text: str = ""


@dataclass(frozen=True)
class Selection:
    """One chosen trial: its row (as a dict), its spec (a dict) and where it sits on the front
    (``front``: the mapping export bundles record under ``metadata["front"]``)."""

    number: int
    row: dict[str, Any]
    spec: dict[str, Any]
    front: dict[str, Any] = field(default_factory=dict)


def parse_pick(text: str) -> Pick:
    """Parse one ``--pick`` value; ConfigError listing the valid forms otherwise."""
    if not isinstance(text, str):
        raise ConfigError("pick", text, "expected a string", PICKS)
    t = text.strip()
    low = t.lower()
    if low in ("knee", "max-accuracy", "min-flops", "front"):
        return Pick(low, None, t)
    m = _FLOPS_RE.match(t)
    if m:
        limit = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
        return Pick("flops", limit, t)
    m = _TRIAL_RE.match(t)
    if m:
        return Pick("trial", int(m.group(1)), t)
    raise ConfigError("pick", text, "unknown pick", PICKS)


def _require(df: Any, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError("trials", missing, "the trials table lacks column(s)",
                          list(df.columns))


def _spec_column(df: Any) -> str:
    for c in SPEC_COLUMNS:
        if c in df.columns:
            return c
    raise ConfigError("trials", list(SPEC_COLUMNS), "the trials table has no spec column",
                      list(df.columns))


def _rows(df: Any, numbers: set[int]) -> Any:
    return df[df["number"].isin(numbers)]


def complete_trials(df: Any, objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES) -> Any:
    """The trials that may enter the front (COMPLETE, finite objective values, one per
    architecture: :func:`nas_attn.objectives.candidates`), sorted by number."""
    from nas_attn.objectives import candidates, entries_of_frame

    names = [n for n, _ in objectives]
    _require(df, ["number", "state", *names])
    keep = {e.number for e in candidates(entries_of_frame(df, names), len(names))}
    return _rows(df, keep).sort_values("number").reset_index(drop=True)


def pareto_front(df: Any, objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES) -> Any:
    """The run's front (:func:`nas_attn.objectives.pareto_front`), best in the last objective
    first (cheapest first with the default objectives), then by number."""
    from nas_attn.objectives import entries_of_frame
    from nas_attn.objectives import pareto_front as front_of

    names = [n for n, _ in objectives]
    _require(df, ["number", "state", *names])
    on = {e.number for e in front_of(entries_of_frame(df, names), [d for _, d in objectives])}
    best_first = objectives[-1][1] in ("minimize", "min")
    return _rows(df, on).sort_values([names[-1], "number"], ascending=[best_first, True]
                                     ).reset_index(drop=True)


def _best(frame: Any, key: str, direction: str, tiebreak: Sequence[tuple[str, str]]) -> Any:
    """The row best in ``key``; ties broken by ``tiebreak`` columns, then lowest number."""
    cols = [key, *(c for c, _ in tiebreak if c in frame.columns), "number"]
    asc = [direction == "minimize", *(d == "minimize" for c, d in tiebreak
                                     if c in frame.columns), True]
    return frame.sort_values(cols, ascending=asc).iloc[0]


def _choose(df: Any, pick: Pick, objectives: Sequence[tuple[str, str]]) -> list[Any]:
    from nas_attn.pareto import knee_point

    names = [n for n, _ in objectives]
    front = pareto_front(df, objectives)
    if pick.kind == "trial":
        _require(df, ["number", "state"])
        finite = df[names].apply(lambda r: all(is_finite_number(v) for v in r), axis=1)
        done = df[(df["state"] == "COMPLETE") & finite]
        valid = [f"trial={int(n)}" for n in sorted(done["number"])]  # any COMPLETE trial
        rows = df[df["number"] == pick.value]
        if rows.empty:
            raise ConfigError("pick", pick.text, f"no trial number {pick.value}", valid or None)
        row = rows.iloc[0]
        if row["state"] != "COMPLETE":
            raise ConfigError("pick", pick.text,
                              f"trial {pick.value} is {row['state']}; only COMPLETE trials were "
                              "trained to the end", valid or None)
        if pick.value not in set(done["number"]):
            raise ConfigError("pick", pick.text, f"trial {pick.value} has no finite objective "
                              "values")
        return [row]
    if front.empty:
        raise ConfigError("pick", pick.text, "the run has no COMPLETE trial to export")
    if pick.kind == "front":
        return [front.iloc[i] for i in range(len(front))]
    if pick.kind == "knee":
        i = knee_point(front[names].to_numpy(dtype=float), [d for _, d in objectives])
        return [front.iloc[i]]
    if pick.kind == "max-accuracy":
        _require(front, [ACCURACY])
        return [_best(front, ACCURACY, "maximize", [(FLOPS, "minimize")])]
    if pick.kind == "min-flops":
        _require(front, [FLOPS])
        return [_best(front, FLOPS, "minimize", [(ACCURACY, "maximize")])]
    if pick.kind == "flops":
        done = complete_trials(df, objectives)
        _require(done, [FLOPS, ACCURACY])
        ok = done[done[FLOPS].astype(float) <= float(pick.value)]  # type: ignore[arg-type]
        if ok.empty:
            cheapest = float(done[FLOPS].astype(float).min())
            raise ConfigError("pick", pick.text, f"no COMPLETE trial has that few FLOPs (the "
                              f"cheapest has {cheapest:,.0f})")
        return [_best(ok, ACCURACY, "maximize", [(FLOPS, "minimize")])]
    raise ConfigError("pick", pick.text, "unknown pick", PICKS)  # pragma: no cover


def select(df: Any, picks: Sequence[str | Pick],
           objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES) -> list[Selection]:
    """The trials the ``picks`` name, in order, each trial once (the first pick naming it wins).

    ``df``: the trials table (see the module docstring); ``objectives``: (column, direction)
    pairs that define the front. Raises ConfigError naming the pick when it selects nothing.
    """
    import json

    if isinstance(picks, str | Pick):
        picks = [picks]
    if not picks:
        raise ConfigError("pick", None, "give at least one pick", PICKS)
    parsed = [p if isinstance(p, Pick) else parse_pick(p) for p in picks]
    spec_col = _spec_column(df)
    front = pareto_front(df, objectives)
    front_numbers = [int(n) for n in front["number"]]
    n_complete = len(complete_trials(df, objectives))
    out: list[Selection] = []
    seen: set[int] = set()
    for pick in parsed:
        for row in _choose(df, pick, objectives):
            number = int(row["number"])
            if number in seen:
                continue
            seen.add(number)
            raw = row[spec_col]
            try:
                spec = json.loads(raw) if isinstance(raw, str) else dict(raw)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"trials[{number}].{spec_col}", raw,
                                  f"not a spec: {e}") from None
            on_front = number in front_numbers
            out.append(Selection(
                number=number,
                row={k: _plain(v) for k, v in row.items()},
                spec=spec,
                front={
                    "pick": pick.text,
                    "on_front": on_front,
                    "front_size": len(front_numbers),
                    "front_index": front_numbers.index(number) if on_front else None,
                    "front_order": f"best {objectives[-1][0]} first",
                    "complete_trials": n_complete,
                    "objectives": {n: d for n, d in objectives},
                },
            ))
    return out


def _plain(v: Any) -> Any:
    """numpy / pandas scalars as plain Python values (JSON-ready); NaN as None."""
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, bool | int | float | str):
        return v
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)
