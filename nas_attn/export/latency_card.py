"""The model card's latency when the run had a latency table (``latency: {table: FILE}``).

:func:`latency_entry` states both numbers the issue asks for: the table's **prediction** for the
spec (with the table's file, fingerprint and correction model) and the **measured** latency of
the bundle's own ``model.onnx`` on this machine (onnxruntime, the table's threads, batch,
warm-up and repeats), with this machine's fingerprint. When the two fingerprints differ the
entry says so (``same_device: false``): the numbers are then not comparable, and the export
still succeeds (a card records, it does not refuse). A table that cannot be read, or that lacks
a cell of the spec, leaves the reason in the entry instead of a prediction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError


def fingerprint_id(fp: Any) -> str:
    """A short, stable name of a fingerprint (its sorted JSON's SHA-256, 12 hex digits)."""
    from nas_attn.search.fingerprint import canonical_json

    return hashlib.sha256(canonical_json(fp).encode()).hexdigest()[:12]


def latency_entry(table_file: str | Path, spec: Any, onnx_path: str | Path,
                  input_shape: Sequence[int]) -> dict[str, Any]:
    """The card's ``latency`` mapping: predicted (table) and measured (this ONNX, here)."""
    from nas_attn.cost.latency_table import load_table
    from nas_attn.cost.timing import fingerprint, session_from_onnx, time_session

    out: dict[str, Any] = {"table": str(table_file)}
    try:
        table = load_table(table_file)
    except ConfigError as e:
        return {**out, "error": str(e)}
    s = table.settings
    out.update(table_fingerprint=dict(table.fingerprint),
               table_fingerprint_id=fingerprint_id(dict(table.fingerprint)),
               table_runtime=s["runtime"], correction_model=table.correction.get("model"),
               batch_size=s["batch"], threads=s["threads"])
    try:
        out["predicted_ms"] = table.predict(spec)
    except ConfigError as e:
        out["predicted_error"] = str(e)
    if tuple(input_shape) != table.input_size:
        out["note"] = (f"the table was measured at input {list(table.input_size)}, the bundle "
                       f"takes {list(input_shape)}")
    shape = (s["batch"], *input_shape)
    here = fingerprint("onnxruntime", "cpu", s["threads"])
    timing = time_session(session_from_onnx(onnx_path, s["threads"]), shape,
                          warmup=s["warmup"], repeats=s["repeats"])
    out.update(measured_ms=timing.median_ms, measured_q1_ms=timing.q1_ms,
               measured_q3_ms=timing.q3_ms, measured_runtime="onnxruntime (model.onnx)",
               measured_fingerprint=here, measured_fingerprint_id=fingerprint_id(here),
               same_device=here == dict(table.fingerprint))
    return out
