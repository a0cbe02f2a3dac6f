"""``nas-attn latency build``: time every cell a search space can produce, once.

Cells (:mod:`nas_attn.cost.cells`) depend only on their own stage's choices, so the builder
walks each stage's candidates with the other stages plain (every backbone of the space, every
module with every hyperparameter value, every position, block selection, conv and fusion
choice) instead of the product of the stages: 2 x 31 + 4 x 62 block cells for the quickstart's
907,924 architectures. Then it times the runtime's per-call overhead and a few whole networks
(calibration specs, seeded) and fits the correction model that cross-validates best on them
(:mod:`nas_attn.cost.latency_model`). At ``granularity="stage"`` a cell is a whole stage, so
the same walk times each stage configuration once (305 for quickstart_attention.yaml, 4 x 305
for the quickstart, which searches width and depth; plus stem and head);
a space with more than :data:`MAX_STAGE_CELLS` of them is refused for ``stage`` (use ``cell``,
whose table grows with the blocks' choices, not their product within a stage). Progress goes to ``FILE.partial`` every few cells
(atomic writes), which ``--resume`` continues (it is also written when the build is interrupted); the table itself is written
once, whole, at the end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas_attn.cost.latency_model import choose
from nas_attn.cost.latency_table import LatencyTable, load_table
from nas_attn.errors import ConfigError

CHECKPOINT_EVERY = 16
MAX_STAGE_CELLS = 5000  # stage configurations a stage table may time (each about 0.2-1 s)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def stage_specs(space: Any) -> Iterator[Any]:
    """Specs that together hold every cell of ``space``: each stage's candidates in turn, the
    other stages plain, for every backbone. Refuses a space with an unstepped float range."""
    from nas_attn.space import StageSpace

    plain = StageSpace()
    for i in range(len(space.stages)):
        stage = space.stages[0] if space.tie_stages else space.stages[i]
        if stage.size() == math.inf:
            raise ConfigError(f"stages[{i}]", None, "a float range without a step has no finite "
                              "set of cells: give it a step, or let the search measure missing "
                              "cells (latency.missing: measure)")
        stages = tuple(stage if k == i else plain for k in range(len(space.stages)))
        for backbone in space.backbones:
            sub = replace(space, backbones=(backbone,), stages=stages, tie_stages=False)
            for point in sub.enumerate():
                if point.spec is not None:
                    yield point.spec


def stage_configurations(space: Any) -> float:
    """How many stage cells a ``stage`` table of ``space`` times: every stage's candidates, for
    every backbone and every combination of searched backbone arguments (impossible
    combinations count; ``math.inf`` for an unstepped range)."""
    stages = [space.stages[0] if space.tie_stages else s for s in space.stages]
    return space.layout_count * sum(s.size() for s in stages)


def check_stage_granularity(space: Any) -> None:
    """Refuse a space whose stage configurations are too many for a ``stage`` table."""
    count = stage_configurations(space)
    if math.inf > count > MAX_STAGE_CELLS:  # an unstepped range: stage_specs says what to do
        raise ConfigError("granularity", "stage", f"this space has {count:,.0f} stage "
                          f"configurations, more than the {MAX_STAGE_CELLS:,} a stage table "
                          "times; build it at granularity cell", ["cell"])


def calibration_specs(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` distinct valid specs drawn from ``space`` with ``seed`` (fewer if it has fewer)."""
    rng = random.Random(seed)
    found: dict[str, Any] = {}
    for _ in range(max(50, 20 * n)):
        if len(found) >= n:
            break
        point = space.point(space.sample_params(rng))
        if point.spec is not None:
            found.setdefault(point.spec.hash, point.spec)
    return list(found.values())


def _start(out: Path, resume: bool, settings: Mapping[str, Any], fp: Mapping[str, Any],
           space_info: Mapping[str, Any]) -> LatencyTable:
    fresh = LatencyTable(settings=dict(settings), fingerprint=dict(fp), space=dict(space_info),
                         source=str(out))
    part = partial_path(out)
    if not resume or not part.exists():
        return fresh
    done = load_table(part)
    for name, have, want in (("settings", done.settings, settings),
                             ("fingerprint", done.fingerprint, fp),
                             ("space", done.space, space_info)):
        if dict(have) != dict(want):
            raise ConfigError(f"{part}: {name}", dict(have), "--resume continues a build with "
                              f"the same {name}; this one has {dict(want)} (delete the file to "
                              "start afresh)")
    return replace(fresh, cells=dict(done.cells))


def build_table(space: Any, out: str | Path, *, runtime: str = "onnxruntime", device: str = "cpu",
                threads: int = 1, batch: int = 1, input_size: Sequence[int] | None = None,
                warmup: int = 10, repeats: int = 50, calibrate: int = 40, seed: int = 0,
                resume: bool = False, granularity: str = "stage",
                progress: Callable[[int, int, str], None] | None = None) -> LatencyTable:
    """Measure every cell of ``space`` and write the table to ``out`` (see the module doc)."""
    from nas_attn.config import check_int
    from nas_attn.cost.cells import cells_with_modules, check_granularity
    from nas_attn.cost.timing import check_settings, fingerprint, time_module

    check_settings(runtime, device, threads)
    if check_granularity(granularity) == "stage":
        check_stage_granularity(space)
    for name, value, low in (("batch", batch, 1), ("warmup", warmup, 0),
                             ("repeats", repeats, 1), ("calibrate", calibrate, 0)):
        check_int(value, name, low=low)
    size = tuple(input_size or space.default_input_size())
    out = Path(out)
    settings = {"runtime": runtime, "device": device, "threads": threads, "batch": batch,
                "input_size": list(size), "warmup": warmup, "repeats": repeats,
                "granularity": granularity}
    table = _start(out, resume, settings, fingerprint(runtime, device, threads),
                   {"name": space.name, "hash": space.hash})
    specs = list(stage_specs(space))
    timed = dict(table.cells)
    since = 0

    def time_it(module: Any, shape: Sequence[int]) -> Any:
        return time_module(module, shape, runtime=runtime, device=device, threads=threads,
                           warmup=warmup, repeats=repeats)

    try:
        for n, spec in enumerate(specs):
            if progress:
                progress(n, len(specs), f"{len(timed)} cells")
            for cell, module, shape in cells_with_modules(spec, size, batch, device="cpu",
                                                          granularity=granularity):
                if cell.key in timed:
                    continue
                timed[cell.key] = {"desc": dict(cell.desc), **time_it(module, shape).to_dict()}
                since += 1
            if since >= CHECKPOINT_EVERY:  # kill -9 loses at most this many cells
                table.with_cells(timed).save(partial_path(out))
                since = 0
    except BaseException:  # Ctrl-C or an error: keep every cell timed so far for --resume
        if timed:
            table.with_cells(timed).save(partial_path(out))
        raise
    table = table.with_cells(timed)
    if progress:
        progress(len(specs), len(specs), f"{len(timed)} cells; calibrating")
    import torch

    table = replace(table, overhead_ms=time_it(torch.nn.Identity(), (batch, *size)).median_ms)
    measured, rows = [], []
    specs_c = calibration_specs(space, calibrate, seed)
    for k, spec in enumerate(specs_c):
        if progress:
            progress(k, len(specs_c), "calibrating on whole networks")
        measured.append(measure_spec(spec, table, time_it))
        rows.append(table.features(spec))
    calibration = [{"spec_hash": spec.hash, "measured_ms": ms, "features": row}
                   for spec, ms, row in zip(specs_c, measured, rows, strict=True)]
    table = replace(table, correction={**choose(rows, measured), "calibration": calibration})
    table.save(out)
    partial_path(out).unlink(missing_ok=True)
    return table


def measure_spec(spec: Any, table: LatencyTable, time_it: Callable[[Any, Sequence[int]], Any]
                 ) -> float:
    """Median latency (ms) of the whole network of ``spec`` at the table's batch and size."""
    from nas_attn.arch import build_model

    shape = (table.settings["batch"], *table.input_size)
    return float(time_it(build_model(spec).eval(), shape).median_ms)


def add_missing(table: LatencyTable, spec: Any) -> LatencyTable:
    """The table with every cell of ``spec`` it lacks measured now, with its own settings (the
    caller checks the fingerprint first) and saved to the table's file."""
    from nas_attn.cost.cells import cells_with_modules
    from nas_attn.cost.timing import time_module

    s = table.settings
    new = {cell.key: {"desc": dict(cell.desc), **time_module(
               module, shape, runtime=s["runtime"], device=s["device"], threads=s["threads"],
               warmup=s["warmup"], repeats=s["repeats"]).to_dict()}
           for cell, module, shape in cells_with_modules(spec, table.input_size, s["batch"],
                                                         device="cpu",
                                                         granularity=table.granularity)
           if cell.key not in table.cells}
    if not new:
        return table
    table = table.with_cells(new)
    if table.source:
        table.save(table.source)
    return table
