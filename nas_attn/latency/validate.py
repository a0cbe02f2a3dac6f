"""``nas-attn latency validate``: how well a table predicts whole networks it never saw.

Draws specs from the table's space with a seed other than the calibration's, times each whole
network end to end with the table's own settings, and compares with the table's prediction.
The report gives every spec's error and the distribution: the share within +-10 % (the target
of docs/benchmarks.md), the median, the 95th percentile and the largest absolute error.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nas_attn.cost.latency_table import LatencyTable

TOLERANCE = 0.10


@dataclass(frozen=True)
class Validation:
    rows: list[dict[str, Any]] = field(default_factory=list)  # spec hash, predicted, measured

    @property
    def errors(self) -> list[float]:
        return [r["error"] for r in self.rows]

    def summary(self) -> dict[str, Any]:
        errs = sorted(abs(e) for e in self.errors)
        if not errs:
            return {"specs": 0}
        p95 = errs[min(len(errs) - 1, max(0, round(0.95 * len(errs)) - 1))]
        return {"specs": len(errs),
                "within_10pct": sum(e <= TOLERANCE for e in errs) / len(errs),
                "median_abs_error": statistics.median(errs), "p95_abs_error": p95,
                "max_abs_error": errs[-1],
                "mean_error": statistics.fmean(self.errors)}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), **asdict(self)}


def validate_table(table: LatencyTable, space: Any, n_specs: int = 50, seed: int = 1,
                   progress: Callable[[int, int, str], None] | None = None,
                   extra: Mapping[str, Any] | None = None) -> Validation:
    """Time ``n_specs`` random whole networks of ``space`` and compare with the prediction."""
    from nas_attn.config import check_int
    from nas_attn.cost.timing import check_settings, time_module
    from nas_attn.latency.build import calibration_specs, measure_spec

    check_int(n_specs, "specs", low=1)
    s = table.settings
    check_settings(s["runtime"], s["device"], s["threads"])

    def time_it(module: Any, shape: Any) -> Any:
        return time_module(module, shape, runtime=s["runtime"], device=s["device"],
                           threads=s["threads"], warmup=s["warmup"], repeats=s["repeats"])

    rows = []
    specs = calibration_specs(space, n_specs, seed)
    for i, spec in enumerate(specs):
        if progress:
            progress(i, len(specs), spec.hash)
        predicted = table.predict(spec)
        measured = measure_spec(spec, table, time_it)
        rows.append({"spec_hash": spec.hash, "predicted_ms": predicted, "measured_ms": measured,
                     "error": (predicted - measured) / measured})
    return Validation(rows)
