"""A latency table: every cell of a search space timed once on one device and runtime.

The file (JSON, ``format: nas-attn-latency/1``) holds the settings it was measured with
(runtime, device, threads, batch, input size, warm-up and repeats, and the granularity of its
cells: ``cell`` or ``stage``, ``cell`` for a table written before there was a choice), the
fingerprint of the
machine and runtime (:func:`nas_attn.cost.timing.fingerprint`), the space it covers, the
per-call overhead of the runtime, the median and quartiles of every cell
(:mod:`nas_attn.cost.cells`) and the correction fitted on whole networks.

Prediction (:meth:`LatencyTable.predict`): a network runs its cells back to back in one call, so
its latency is the sum of its cells' medians less the per-call overhead paid once per cell but
only once per network, ``sum(cell) - (n - 1) * overhead``, then the table's correction model
(:mod:`nas_attn.cost.latency_model`: that sum as it is when none was fitted). A table is written
atomically, so a file is whole or absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nas_attn.cost.cells import Cell, check_granularity, spec_cells
from nas_attn.errors import ConfigError

FORMAT = "nas-attn-latency/1"
SETTINGS = ("runtime", "device", "threads", "batch", "input_size", "warmup", "repeats")
MISSING = ("refuse", "measure")
NO_CORRECTION: Mapping[str, Any] = {"version": 1, "model": "additive", "coef": {}}


class MissingCellsError(ConfigError):
    """A spec has cells the table never measured."""

    def __init__(self, source: str, cells: Sequence[Cell]) -> None:
        self.cells = tuple(cells)
        super().__init__(source, cells[0].label, f"{len(cells)} cell(s) of this spec are not in "
                         "the latency table (measured for another space?); first missing",
                         list(MISSING))


@dataclass(frozen=True)
class LatencyTable:
    settings: Mapping[str, Any]
    fingerprint: Mapping[str, Any]
    cells: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    overhead_ms: float = 0.0
    correction: Mapping[str, Any] = field(default_factory=lambda: dict(NO_CORRECTION))
    space: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was read from

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.settings["input_size"])  # type: ignore[return-value]

    @property
    def granularity(self) -> str:
        """What one cell is: ``cell`` (blocks) or ``stage`` (whole stages)."""
        return str(self.settings.get("granularity", "cell"))

    def cells_of(self, spec: Any) -> list[Cell]:
        """The cells of ``spec`` at the table's input, batch and granularity."""
        return spec_cells(spec, self.input_size, self.settings["batch"], self.granularity)

    def features(self, spec: Any) -> dict[str, float]:
        """The correction model's features of ``spec`` (:func:`latency_model.features`)."""
        from nas_attn.cost.latency_model import features

        cells = self.cells_of(spec)
        absent = [c for c in cells if c.key not in self.cells]
        if absent:
            raise MissingCellsError(self.source or "latency table", absent)
        return features([c.desc for c in cells],
                        [float(self.cells[c.key]["median_ms"]) for c in cells], self.overhead_ms)

    def additive_ms(self, spec: Any) -> float:
        """Sum of the cells' medians less the overhead counted once per extra cell."""
        return self.features(spec)["additive"]

    def predict(self, spec: Any) -> float:
        """Predicted latency (ms) of ``spec`` on the table's device and runtime."""
        from nas_attn.cost.latency_model import predict

        return predict(self.correction, self.features(spec))

    def with_cells(self, new: Mapping[str, Mapping[str, Any]]) -> LatencyTable:
        return replace(self, cells={**self.cells, **new})

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "settings": dict(self.settings),
                "fingerprint": dict(self.fingerprint), "space": dict(self.space),
                "overhead_ms": self.overhead_ms, "correction": dict(self.correction),
                "cells": {k: dict(v) for k, v in sorted(self.cells.items())}}

    def save(self, path: str | Path) -> Path:
        from nas_attn.files import write_atomically

        text = json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"
        return write_atomically(path, lambda tmp: tmp.write_text(text))


def _number(value: Any, field_name: str, low: float | None = None, positive: bool = False
            ) -> float:
    from nas_attn.config import check_float

    check_float(value, field_name, low=low, low_open=positive)
    return float(value)


def _check_kind(desc: Any, granularity: str, field_name: str) -> None:
    """Refuse a cell of the other granularity: a block in a ``stage`` table, a whole stage
    without a fusion module in a ``cell`` table (whose stage cells are fusion stages only)."""
    desc = desc if isinstance(desc, Mapping) else {}
    kind, holds = desc.get("kind"), desc.get("holds") or {}
    fusion = isinstance(holds, Mapping) and isinstance(holds.get("fusion"), Mapping)
    if (granularity == "stage" and kind == "block") or (
            granularity == "cell" and kind == "stage" and not fusion):
        raise ConfigError(field_name, kind, f"a cell of another granularity in a table of "
                          f"granularity {granularity} (settings.granularity); cells of this "
                          "table are", ["stem", "stage", "head"] if granularity == "stage"
                          else ["stem", "block", "stage (with fusion)", "head"])


def table_from_dict(data: Any, source: str) -> LatencyTable:
    """A table from its JSON form; ConfigError naming the file and field when anything is off."""
    from nas_attn.cost.latency_model import check_correction

    if not isinstance(data, Mapping):
        raise ConfigError(source, type(data).__name__, "not a latency table (expected a mapping)")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{source}: format", data.get("format"), "not a latency table",
                          [FORMAT])
    for key in ("settings", "fingerprint", "cells"):
        if not isinstance(data.get(key), Mapping):
            raise ConfigError(f"{source}: {key}", data.get(key), "missing or not a mapping")
    settings = data["settings"]
    absent = [k for k in SETTINGS if k not in settings]
    if absent:
        raise ConfigError(f"{source}: settings.{absent[0]}", None, "missing", SETTINGS)
    granularity = check_granularity(settings.get("granularity", "cell"),
                                    f"{source}: settings.granularity")
    for key, cell in data["cells"].items():
        if not isinstance(cell, Mapping):
            raise ConfigError(f"{source}: cells.{key}", cell, "not a mapping")
        _check_kind(cell.get("desc"), granularity, f"{source}: cells.{key}")
        _number(cell.get("median_ms"), f"{source}: cells.{key}.median_ms", 0, positive=True)
    corr = check_correction(data.get("correction"), source)
    return LatencyTable(settings=dict(settings), fingerprint=dict(data["fingerprint"]),
                        cells=dict(data["cells"]),
                        overhead_ms=_number(data.get("overhead_ms", 0.0),
                                            f"{source}: overhead_ms", 0),
                        correction=corr, space=dict(data.get("space") or {}), source=source)


def load_table(path: str | Path) -> LatencyTable:
    """Read a latency table; a missing, truncated or corrupt file is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("latency table", str(path), f"cannot be read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(str(path), None, f"not valid JSON (truncated or corrupt?): {e}"
                          ) from None
    return table_from_dict(data, str(path))


def check_fingerprint(table: LatencyTable, current: Mapping[str, Any]) -> None:
    """Refuse a table measured on another machine or runtime, naming both fingerprints."""
    from nas_attn.cost.timing import fingerprint_difference

    diff = fingerprint_difference(dict(table.fingerprint), dict(current))
    if diff:
        raise ConfigError(
            f"{table.source or 'latency table'}: fingerprint", dict(table.fingerprint),
            f"measured on another device or runtime (differs in {', '.join(diff)}); this "
            f"machine is {dict(current)}; build a table here with `nas-attn latency build`")
