"""The correction of a latency table: from its cells' medians to a whole network's latency.

A network's **features** (:func:`features`) come from its cells alone: ``additive`` (the sum of
the cells' medians less the per-call overhead counted once per extra cell), the medians summed
per part (``stem``, ``stage0``, ``stage1``, ..., ``head``), and call counts (``cells``, and
``gates``: the attention modules it runs, each a chain of small ops that a whole-network
session may fuse or schedule differently from a timed cell).

A **model** is a linear function of some of them, ``const + sum(coef[f] * feature[f])``,
fitted by least squares on whole networks timed at build time, each row weighted by
``1 / measured`` so that it minimises the relative error (the quantity the +-10 % target is
about). :data:`MODELS`, smallest first:

- ``additive``: the additive sum as it is (nothing fitted);
- ``affine``: ``const + b * additive``;
- ``stages``: a constant and one coefficient per part;
- ``stages+calls``: ``stages`` plus a cost per cell and per gate.

:func:`choose` fits every model that the calibration networks can support (at least two more
networks than coefficients) and keeps the one with the lowest leave-one-out mean relative
error (a larger model must beat a smaller one, so ties go to the smaller). The table stores
``{"version": 1, "model": NAME, "coef": {...}, "cv": {...}}``; a table written before models
existed (``{"a": ..., "b": ...}``) reads as ``affine``. The prediction is a fixed formula of the
stored numbers, so ``profile(spec, latency="lut:FILE")`` is deterministic.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from nas_attn.errors import ConfigError

VERSION = 1
MODELS = ("additive", "affine", "stages", "stages+calls")
_PART = re.compile(r"^(stem|head|stage\d+)$")
CONST = "const"


def features(descs: Sequence[Mapping[str, Any]], medians: Sequence[float],
             overhead_ms: float) -> dict[str, float]:
    """The features of one network from its cells' descriptions and medians (forward order)."""
    out: dict[str, float] = {"additive": sum(medians) - (len(medians) - 1) * overhead_ms,
                             "cells": float(len(medians)), "gates": 0.0}
    for desc, ms in zip(descs, medians, strict=True):
        kind = desc["kind"]
        part = kind if kind in ("stem", "head") else f"stage{desc['stage']}"
        out[part] = out.get(part, 0.0) + float(ms)
        holds = desc.get("holds") or {}
        if kind == "block":
            out["gates"] += len(holds.get("gates") or {})
        elif kind == "stage":  # a whole stage: its fusion module and its gate (one each)
            out["gates"] += _is_module(holds.get("fusion")) + _is_module(holds.get("attention"))
    return out


def _is_module(choice: Any) -> float:
    """1 when a stage's ``attention`` or ``fusion`` choice is a module, 0 for none."""
    return float(isinstance(choice, Mapping) and choice.get("type") not in (None, "none"))


def _names(model: str, parts: Sequence[str]) -> list[str]:
    if model == "affine":
        return ["additive"]
    if model == "stages":
        return list(parts)
    if model == "stages+calls":
        return [*parts, "cells", "gates"]
    return []


def parts_of(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The per-part feature names present in ``rows``, in forward order."""
    found = {k for r in rows for k in r if _PART.match(k)}
    stages = sorted((k for k in found if k.startswith("stage")), key=lambda k: int(k[5:]))
    return [k for k in ("stem", *stages, "head") if k in found]


def predict(correction: Mapping[str, Any], feats: Mapping[str, float]) -> float:
    """The model's latency (ms) for a network's features (an absent part counts 0)."""
    if correction["model"] == "additive":
        return float(feats["additive"])
    coef = correction["coef"]
    return float(coef.get(CONST, 0.0)) + sum(float(c) * float(feats.get(k, 0.0))
                                             for k, c in coef.items() if k != CONST)


def fit(model: str, rows: Sequence[Mapping[str, float]], measured: Sequence[float],
        parts: Sequence[str] | None = None) -> dict[str, Any]:
    """Weighted least squares of ``model`` on ``rows`` (features) against ``measured`` (ms)."""
    import numpy as np

    if model == "additive":
        return {"version": VERSION, "model": model, "coef": {}}
    names = _names(model, parts_of(rows) if parts is None else parts)
    x = np.array([[1.0, *(r.get(k, 0.0) for k in names)] for r in rows], dtype=float)
    y = np.asarray(measured, dtype=float)
    w = 1.0 / y
    sol, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    return {"version": VERSION, "model": model,
            "coef": {CONST: float(sol[0]), **{k: float(v) for k, v in zip(names, sol[1:],
                                                                          strict=True)}}}


def _n_coef(model: str, parts: Sequence[str]) -> int:
    return 0 if model == "additive" else 1 + len(_names(model, parts))


def supported(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The models ``rows`` can fit and cross-validate: two more networks than coefficients."""
    parts = parts_of(rows)
    return [m for m in MODELS if m == "additive" or len(rows) >= _n_coef(m, parts) + 2]


TOLERANCE = 0.10


def error_summary(errors: Sequence[float]) -> dict[str, Any]:
    """Relative errors: share within +-10 %, mean, median, 95th percentile and max of |error|,
    and the mean (signed) error."""
    errs = sorted(abs(e) for e in errors)
    if not errs:
        return {"specs": 0}
    p95 = errs[min(len(errs) - 1, max(0, round(0.95 * len(errs)) - 1))]
    return {"specs": len(errs), "within_10pct": sum(e <= TOLERANCE for e in errs) / len(errs),
            "mean_abs_error": statistics.fmean(errs), "median_abs_error": statistics.median(errs),
            "p95_abs_error": p95, "max_abs_error": errs[-1],
            "mean_error": statistics.fmean(errors)}


def cross_validate(model: str, rows: Sequence[Mapping[str, float]],
                   measured: Sequence[float]) -> dict[str, Any]:
    """Leave-one-out relative errors of ``model`` (:func:`error_summary`)."""
    parts = parts_of(rows)
    errs = []
    for i in range(len(rows)):
        keep = [j for j in range(len(rows)) if j != i]
        corr = fit(model, [rows[j] for j in keep], [measured[j] for j in keep], parts)
        errs.append((predict(corr, rows[i]) - measured[i]) / measured[i])
    return error_summary(errs)


def choose(rows: Sequence[Mapping[str, float]], measured: Sequence[float]
           ) -> dict[str, Any]:
    """The model of :data:`MODELS` with the lowest leave-one-out mean relative error, fitted on
    every row, with every candidate's cross-validation in ``cv`` (``additive`` without rows)."""
    if not rows:
        return {"version": VERSION, "model": "additive", "coef": {}, "cv": {}}
    parts = parts_of(rows)
    cv = {m: cross_validate(m, rows, measured) for m in supported(rows)}
    best = min(cv, key=lambda m: (round(cv[m]["mean_abs_error"], 6), MODELS.index(m)))
    return {**fit(best, rows, measured, parts), "cv": cv}


def check_correction(raw: Any, source: str) -> dict[str, Any]:
    """A stored correction, checked (a legacy ``{a, b}`` reads as ``affine``); a ConfigError
    naming the field for an unknown version or model, an unknown term or a non-number."""
    from nas_attn.config import check_float

    field = f"{source}: correction"
    if not isinstance(raw, Mapping):
        raise ConfigError(field, raw, "missing or not a mapping")
    if "model" not in raw:  # written before correction models existed
        coef = {CONST: raw.get("a", 0.0), "additive": raw.get("b", 1.0)}
        for k, v in (("a", coef[CONST]), ("b", coef["additive"])):
            check_float(v, f"{field}.{k}")
        return {"version": VERSION, "model": "affine",
                "coef": {k: float(v) for k, v in coef.items()}}
    if raw.get("version") != VERSION:
        raise ConfigError(f"{field}.version", raw.get("version"), "unknown correction version "
                          "(written by another nas-attn?)", [VERSION])
    if raw["model"] not in MODELS:
        raise ConfigError(f"{field}.model", raw["model"], "unknown correction model", MODELS)
    coef = raw.get("coef")
    if not isinstance(coef, Mapping):
        raise ConfigError(f"{field}.coef", coef, "missing or not a mapping")
    known = (CONST, "additive", "cells", "gates")
    for k, v in coef.items():
        if k not in known and not _PART.match(str(k)):
            raise ConfigError(f"{field}.coef.{k}", k, "unknown term",
                              [*known, "stem", "stage<i>", "head"])
        check_float(v, f"{field}.coef.{k}")
    return {**dict(raw), "coef": {k: float(v) for k, v in coef.items()}}
