"""The tabular benchmark: every architecture of a finite space trained with several seeds.

In the spirit of NAS-Bench-101/201 (Ying et al., arXiv:1902.09635; Dong & Yang,
arXiv:2001.00326): a search can be replayed against the table in seconds instead of training.

File format: one compressed ``.npz`` (``numpy.savez_compressed``, no pickles), schema
version :data:`SCHEMA_VERSION`:

=============== ==================== =======================================================
key             dtype, shape         meaning
=============== ==================== =======================================================
``acc``         float32 (A, S, E)    validation accuracy after each epoch, per arch and seed
``flops``       float64 (A,)         FLOPs per image (:func:`nas_attn.cost.profile`)
``params``      int64 (A,)           parameter count
``seconds``     float32 (A, S)       wall time of each training (NaN when unknown)
``seeds``       int64 (S,)           the training seeds (columns of ``acc``)
``spec_hash``   str (A,)             :func:`nas_attn.arch.spec_hash` of each architecture
``arch_params`` str (A,)             JSON of the search-space parameters of each architecture
``meta``        str ()               JSON: schema version, space, data, training, generation
                                     time and machine, command
=============== ==================== =======================================================

``A`` architectures, ``S`` seeds, ``E`` epochs (the full budget). Objectives of an
architecture: mean final accuracy over seeds (maximise) and FLOPs (minimise).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from nas_attn.errors import ConfigError

SCHEMA_VERSION = 1
DIRECTIONS = ("maximize", "minimize")
KEYS = ("acc", "flops", "params", "seconds", "seeds", "spec_hash", "arch_params", "meta")


def params_key(params: Mapping[str, Any]) -> str:
    """The canonical text of a parameter assignment (the table's lookup key)."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, eq=False)
class Table:
    """A tabular benchmark in memory. Build one with :func:`load_table` or directly."""

    acc: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    arch_params: tuple[dict[str, Any], ...]
    seeds: np.ndarray
    spec_hash: tuple[str, ...] = ()
    seconds: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        acc = np.asarray(self.acc, dtype=np.float32)
        object.__setattr__(self, "acc", acc)
        if acc.ndim != 3 or 0 in acc.shape:
            raise ConfigError("table.acc", list(acc.shape), "expected a non-empty (A, S, E) array")
        a, s, _ = acc.shape
        if not np.isfinite(acc).all():
            bad = np.argwhere(~np.isfinite(acc))[0].tolist()
            raise ConfigError("table.acc", bad, "missing or non-finite accuracy at (arch, seed, "
                              "epoch); the table must be complete")
        if acc.min() < 0 or acc.max() > 1:
            raise ConfigError("table.acc", [float(acc.min()), float(acc.max())],
                              "accuracies must lie in [0, 1]")
        for name, dtype in (("flops", np.float64), ("params", np.int64)):
            arr = np.asarray(getattr(self, name), dtype=dtype)
            if arr.shape != (a,):
                raise ConfigError(f"table.{name}", list(arr.shape), f"expected shape ({a},)")
            if not np.isfinite(arr).all() or (arr <= 0).any():
                raise ConfigError(f"table.{name}", None, "must be finite and > 0")
            object.__setattr__(self, name, arr)
        seeds = np.asarray(self.seeds, dtype=np.int64)
        if seeds.shape != (s,) or len(set(seeds.tolist())) != s:
            raise ConfigError("table.seeds", seeds.tolist(), f"expected {s} distinct seeds")
        object.__setattr__(self, "seeds", seeds)
        if len(self.arch_params) != a:
            raise ConfigError("table.arch_params", len(self.arch_params), f"expected {a} entries")
        object.__setattr__(self, "arch_params", tuple(dict(p) for p in self.arch_params))
        keys = [params_key(p) for p in self.arch_params]
        if len(set(keys)) != a:
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ConfigError("table.arch_params", dup, "two architectures share parameters")
        if self.spec_hash and len(self.spec_hash) != a:
            raise ConfigError("table.spec_hash", len(self.spec_hash), f"expected {a} entries")
        object.__setattr__(self, "spec_hash", tuple(str(h) for h in self.spec_hash))
        if self.seconds is not None:
            sec = np.asarray(self.seconds, dtype=np.float32)
            if sec.shape != (a, s):
                raise ConfigError("table.seconds", list(sec.shape), f"expected shape ({a}, {s})")
            object.__setattr__(self, "seconds", sec)
        object.__setattr__(self, "meta", dict(self.meta))

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_archs(self) -> int:
        return int(self.acc.shape[0])

    @property
    def n_seeds(self) -> int:
        return int(self.acc.shape[1])

    @property
    def epochs(self) -> int:
        return int(self.acc.shape[2])

    # -- derived objectives ------------------------------------------------------------------
    @cached_property
    def index(self) -> dict[str, int]:
        """``params_key(params) -> architecture index``."""
        return {params_key(p): i for i, p in enumerate(self.arch_params)}

    def lookup(self, params: Mapping[str, Any]) -> int:
        i = self.index.get(params_key(params))
        if i is None:
            raise ConfigError("params", dict(params), "no such architecture in the table")
        return i

    @cached_property
    def final_mean(self) -> np.ndarray:
        """Mean final-epoch accuracy over seeds, per architecture."""
        return self.acc[:, :, -1].astype(np.float64).mean(axis=1)

    @cached_property
    def final_std(self) -> np.ndarray:
        """Sample standard deviation (ddof=1; 0 with one seed) of the final accuracy."""
        if self.n_seeds < 2:
            return np.zeros(self.n_archs)
        return self.acc[:, :, -1].astype(np.float64).std(axis=1, ddof=1)

    @cached_property
    def objectives(self) -> np.ndarray:
        """``(A, 2)``: mean final accuracy (maximise), FLOPs (minimise)."""
        return np.column_stack([self.final_mean, self.flops])

    @cached_property
    def true_front(self) -> np.ndarray:
        """Indices of the architectures on the true Pareto front (of the mean objectives)."""
        from nas_attn.pareto import pareto_front_mask

        return np.flatnonzero(pareto_front_mask(self.objectives, DIRECTIONS))

    @cached_property
    def reference_point(self) -> tuple[float, float]:
        """The fixed hypervolume reference: the table's nadir (worst mean accuracy, largest
        FLOPs) pushed out by 10 % of each objective's range, so every front point counts."""
        acc, fl = self.final_mean, self.flops
        acc_span = float(acc.max() - acc.min()) or 1.0
        fl_span = float(fl.max() - fl.min()) or 1.0
        return (float(acc.min()) - 0.1 * acc_span, float(fl.max()) + 0.1 * fl_span)

    def summary(self) -> dict[str, Any]:
        return {
            "archs": self.n_archs, "seeds": self.seeds.tolist(), "epochs": self.epochs,
            "true_front": len(self.true_front),
            "final_acc_mean_range": [float(self.final_mean.min()), float(self.final_mean.max())],
            "median_seed_std": float(np.median(self.final_std)),
            "flops_range": [float(self.flops.min()), float(self.flops.max())],
        }


def save_table(table: Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` (a ``.npz``; parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**table.meta, "schema_version": SCHEMA_VERSION}
    arrays: dict[str, Any] = {
        "acc": table.acc.astype(np.float32),
        "flops": table.flops.astype(np.float64),
        "params": table.params.astype(np.int64),
        "seconds": (table.seconds if table.seconds is not None
                    else np.full((table.n_archs, table.n_seeds), np.nan, np.float32)),
        "seeds": table.seeds.astype(np.int64),
        "spec_hash": np.asarray(table.spec_hash or [""] * table.n_archs, dtype=str),
        "arch_params": np.asarray([params_key(p) for p in table.arch_params], dtype=str),
        "meta": np.asarray(json.dumps(meta, sort_keys=True, default=str)),
    }
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_table(path: str | Path) -> Table:
    """Read a table written by :func:`save_table`; the schema is checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("table", str(path), "no such file")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise ConfigError("table", str(path), f"missing key {missing[0]!r}", list(KEYS))
        data = {k: z[k] for k in KEYS}
    meta = json.loads(str(data["meta"]))
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError("table.meta.schema_version", version, "unsupported schema version",
                          [SCHEMA_VERSION])
    hashes = [str(h) for h in data["spec_hash"]]
    return Table(
        acc=data["acc"], flops=data["flops"], params=data["params"],
        arch_params=tuple(json.loads(str(p)) for p in data["arch_params"]),
        seeds=data["seeds"], spec_hash=tuple(hashes) if any(hashes) else (),
        seconds=data["seconds"], meta=meta)


def from_curves(acc: np.ndarray, flops: Sequence[float], params: Sequence[int],
                arch_params: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                **extra: Any) -> Table:
    """Convenience constructor (tests, constructed tables)."""
    return Table(acc=np.asarray(acc), flops=np.asarray(flops), params=np.asarray(params),
                 arch_params=tuple(dict(p) for p in arch_params), seeds=np.asarray(seeds),
                 **extra)
