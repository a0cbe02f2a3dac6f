"""``nas-attn latency validate``: how well a table predicts whole networks it never saw.

Draws specs from the table's space with a seed other than the calibration's, times each whole
network end to end with the table's own settings, and compares with the table's prediction.
The report gives every spec's error and the distribution: the share within +-10 % (the target
of docs/benchmarks.md), the median, the 95th percentile and the largest absolute error, and the
same figures for every correction model of :mod:`nas_attn.cost.latency_model` refitted on the
table's calibration networks (which model would have done best on these held-out specs).

:func:`repeat_spread` is the floor under any predictor: it times the same networks several
times (a fresh session each time) and reports how far one median strays from that network's
median of medians. When single medians of one network are not within +-10 % of each other 95 %
of the time, no table can predict them that well on this machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nas_attn.cost.latency_model import error_summary
from nas_attn.cost.latency_table import LatencyTable


@dataclass(frozen=True)
class Validation:
    rows: list[dict[str, Any]] = field(default_factory=list)  # spec hash, predicted, measured
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # refitted models' figures

    @property
    def errors(self) -> list[float]:
        return [r["error"] for r in self.rows]

    def summary(self) -> dict[str, Any]:
        return error_summary(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), **asdict(self)}


def _timer(table: LatencyTable) -> Callable[[Any, Any], Any]:
    from nas_attn.cost.timing import check_settings, time_module

    s = table.settings
    check_settings(s["runtime"], s["device"], s["threads"])

    def time_it(module: Any, shape: Any) -> Any:
        return time_module(module, shape, runtime=s["runtime"], device=s["device"],
                           threads=s["threads"], warmup=s["warmup"], repeats=s["repeats"])

    return time_it


def model_errors(table: LatencyTable, rows: Sequence[Mapping[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """Every correction model refitted on the table's calibration networks, judged on
    ``rows`` (validation rows with ``features`` and ``measured_ms``); empty without them."""
    from nas_attn.cost.latency_model import fit, parts_of, predict, supported

    calib = table.correction.get("calibration") or []
    if not calib or not rows:
        return {}
    feats = [c["features"] for c in calib]
    measured = [float(c["measured_ms"]) for c in calib]
    parts = parts_of(feats)
    out = {}
    for model in supported(feats):  # what build could have chosen from these networks
        corr = fit(model, feats, measured, parts)
        errs = [(predict(corr, r["features"]) - r["measured_ms"]) / r["measured_ms"]
                for r in rows]
        out[model] = {**error_summary(errs), "coef": corr["coef"]}
    return out


def validate_table(table: LatencyTable, space: Any, n_specs: int = 50, seed: int = 1,
                   progress: Callable[[int, int, str], None] | None = None,
                   measured_ms: Mapping[str, float] | None = None) -> Validation:
    """Time ``n_specs`` random whole networks of ``space`` and compare with the prediction.

    ``measured_ms`` (spec hash -> ms, e.g. another table's validation rows on the same specs)
    judges the table on those timings instead of timing again: two tables of one machine, such
    as two granularities, compared on the same measurements."""
    from nas_attn.config import check_int
    from nas_attn.latency.build import calibration_specs, measure_spec

    check_int(n_specs, "specs", low=1)
    time_it = _timer(table)
    rows = []
    specs = calibration_specs(space, n_specs, seed)
    for i, spec in enumerate(specs):
        if progress:
            progress(i, len(specs), spec.hash)
        predicted = table.predict(spec)
        measured = (measured_ms[spec.hash] if measured_ms is not None
                    else measure_spec(spec, table, time_it))
        rows.append({"spec_hash": spec.hash, "predicted_ms": predicted, "measured_ms": measured,
                     "error": (predicted - measured) / measured,
                     "features": table.features(spec)})
    return Validation(rows, model_errors(table, rows))


def repeat_spread(table: LatencyTable, space: Any, n_specs: int = 10, times: int = 5,
                  seed: int = 2, progress: Callable[[int, int, str], None] | None = None
                  ) -> dict[str, Any]:
    """Time each of ``n_specs`` networks ``times`` times; how far one median strays from its
    network's median of medians (``deviation``), per spec and as a distribution."""
    from nas_attn.config import check_int
    from nas_attn.latency.build import calibration_specs, measure_spec

    check_int(n_specs, "spread specs", low=1)
    check_int(times, "repeat-spread", low=2)
    time_it = _timer(table)
    specs = calibration_specs(space, n_specs, seed)
    rows, deviations = [], []
    for i, spec in enumerate(specs):
        if progress:
            progress(i, len(specs), spec.hash)
        medians = [measure_spec(spec, table, time_it) for _ in range(times)]
        centre = statistics.median(medians)
        dev = [(m - centre) / centre for m in medians]
        deviations += dev
        rows.append({"spec_hash": spec.hash, "medians_ms": medians,
                     "max_abs_deviation": max(abs(d) for d in dev)})
    return {"times": times, "summary": error_summary(deviations), "rows": rows}
