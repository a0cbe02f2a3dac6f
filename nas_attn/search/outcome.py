"""Pure decision logic: what a finished Ray trial means for the Optuna study.

The rules (documented in docs/search.md):

- COMPLETE: trained the full epoch budget and every objective is a finite number.
- PRUNED: stopped by early stopping before the full budget; attrs ``last_accuracy`` and
  ``epochs_trained``; never part of the Pareto front.
- FAIL with a ``fail_reason`` attr: ``nonfinite`` (NaN/inf loss or metric), ``oom``,
  ``error`` (any other exception), ``missing_metric`` (a result without an objective, or an
  evaluator that stopped reporting before the budget), ``over_budget`` (cost constraint, never
  trained), ``orphaned`` (its driver died; set on resume).

A trial *counts* toward the requested number of trials ("finished") when it is COMPLETE,
PRUNED, or FAIL after being handed to a worker (or reused); the ``counts`` user attr records
it on every FAIL. Over-budget proposals, invalid specs and orphans do not count: they cost no training, and counting them would let a tight budget or a crash eat
the trials a user asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_attn.objectives import ACCURACY, COMPLETE, Objective, is_finite_number

__all__ = ["ACCURACY", "COMPLETE", "FAIL", "INTERMEDIATE", "PRUNED", "REUSABLE_FAILS",
           "Objective", "Outcome", "classify", "fail", "is_finite_number", "reason_of"]

PRUNED, FAIL = "PRUNED", "FAIL"
REUSABLE_FAILS = ("nonfinite", "missing_metric")
# the per-epoch record of a trial (user attr): {"<epoch>": [accuracy, cost], ...}
INTERMEDIATE = "intermediate"


@dataclass(frozen=True)
class Outcome:
    state: str
    values: tuple[float, ...] | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


def fail(reason: str, message: str = "", **attrs: Any) -> Outcome:
    out = {"fail_reason": reason, **attrs}
    if message:
        out["fail_message"] = message[:2000]
    return Outcome(FAIL, None, out)


def classify(result: Mapping[str, Any] | None, objectives: Sequence[Objective], epochs: int,
             costs: Mapping[str, float]) -> Outcome:
    """The outcome of a Ray trial that ended without an error, from its last result.

    ``costs`` are the objectives computed before training (flops, params, latency_ms); the
    others come from the last reported result.
    """
    if not result or "epoch" not in result:
        return fail("missing_metric", "the trial ended without reporting a result")
    epoch = int(result["epoch"])
    acc = result.get(ACCURACY)
    values: list[float] = []
    for obj in objectives:
        v = costs.get(obj.name, result.get(obj.name))
        if v is None:
            return fail("missing_metric", f"no value for objective {obj.name!r}",
                        epochs_trained=epoch)
        if not is_finite_number(v):
            return fail("nonfinite", f"objective {obj.name!r} is {v!r}", epochs_trained=epoch)
        values.append(float(v))
    attrs: dict[str, Any] = {"epochs_trained": epoch}
    if is_finite_number(acc):
        attrs["last_accuracy"] = float(acc)
    if epoch < epochs:
        return Outcome(PRUNED, None, attrs)
    return Outcome(COMPLETE, tuple(values), attrs)


def reason_of(exc: BaseException | None) -> tuple[str, str]:
    """``(fail_reason, message)`` for the exception a trial raised (follows Ray's wrapping)."""
    from nas_attn.errors import TrialError

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 10:
        seen += 1
        cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError wraps the real one
        if isinstance(cause, BaseException) and cause is not e:
            e = cause
            continue
        if isinstance(e, TrialError) and isinstance(getattr(e, "reason", None), str):
            return e.reason, str(e)
        e = e.__cause__ or e.__context__
    if exc is None:
        return "error", "the trial raised an error (no details recorded)"
    text = str(exc)
    return "error", text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
