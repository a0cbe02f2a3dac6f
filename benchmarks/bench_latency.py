"""Latency tables on this machine, in one command: build, validate, spread, module shares.

1. ``build`` a table of the quickstart's attention space at the quickstart study's data
   (``search_spaces/quickstart_attention.yaml``: one network size, so every figure is about
   attention and conv choices; onnxruntime, ``--threads`` intra-op threads,
   ``--granularity`` ``stage`` by default: stem, every stage configuration and head timed
   whole; ``cell`` times blocks; ``--calibrate`` whole networks for the correction model,
   chosen by leave-one-out);
2. ``validate`` it on ``--specs`` random networks it never saw (another seed), with the figures
   of every correction model refitted on the calibration networks; then the same for a table
   of the other granularity (built with the same settings), judged on the same specs and the
   same whole-network timings (``--no-compare`` to skip);
3. the **spread**: ``--spread-specs`` networks timed ``--spread-times`` times each, how far one
   median strays from that network's median of medians. This is the floor under any predictor:
   when it is not within +-10 % 95 % of the time, no table can be on this machine. The same at
   ``--spread-threads`` (1 by default): whether another thread count would lower the floor;
4. the **module shares** of docs/cost-model.md: every zoo module in a ResNet-18-CIFAR stage and a
   MobileNetV2 stage, its share of the stage's FLOPs against its share of its latency.

Writes one JSON (``--json``, default ``latency-bench.json``) and prints markdown for
docs/latency.md, docs/benchmarks.md and docs/cost-model.md. About 6 minutes on 2 idle cores with
the defaults; run it on a quiet machine (nothing else running), else it measures the machine:

    python benchmarks/bench_latency.py [--threads 2] [--input-size 3 16 16] [--calibrate 40]
        [--granularity stage|cell]
        [--specs 50] [--spread-specs 10] [--spread-times 5] [--spread-threads 1]
        [--warmup 10] [--repeats 50]
        [--no-compare] [--no-shares] [--keep-table FILE] [--json FILE]

``--threads 1`` and ``--input-size 3 32 32`` are the other settings the investigation asks
about (run once each; every run is about 5 minutes, less with ``--no-shares``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "quickstart.yaml"  # its data: input size and classes
SPACE = ROOT / "search_spaces" / "quickstart_attention.yaml"


def _line(m: dict[str, Any]) -> str:
    return (f"{m['within_10pct']:.0%} within ±10 %, median \\|error\\| "
            f"{m['median_abs_error']:.1%}, p95 {m['p95_abs_error']:.1%}, max "
            f"{m['max_abs_error']:.1%}, mean {m['mean_error']:+.1%}")


def _save(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The JSON so far (after every step, so a late failure keeps what was measured)."""
    args.json.write_text(json.dumps(out, indent=1) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from nas_attn.latency import build_table, repeat_spread, validate_table
    from nas_attn.latency.shares import STAGES, module_shares
    from nas_attn.modules import MODULES
    from nas_attn.search.study import load_space_or_study
    from nas_attn.space import load_space

    data = load_space_or_study(STUDY)
    space = load_space(SPACE).with_data(data.num_classes, data.in_chans, data.input_size)
    out: dict[str, Any] = {"study": str(STUDY.relative_to(ROOT)),
                           "space": str(SPACE.relative_to(ROOT)), "threads": args.threads,
                           "granularity": args.granularity,
                           "input_size": list(args.input_size or space.default_input_size())}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        table = build_table(space, Path(tmp) / "t.json", runtime="onnxruntime",
                            threads=args.threads, input_size=args.input_size,
                            calibrate=args.calibrate, seed=0, warmup=args.warmup,
                            repeats=args.repeats, granularity=args.granularity)
        out["build"] = {"seconds": time.perf_counter() - t0, "cells": len(table.cells),
                        "overhead_ms": table.overhead_ms,
                        "correction": {k: v for k, v in table.correction.items()
                                       if k != "calibration"},
                        "fingerprint": dict(table.fingerprint)}
        if args.keep_table:
            table.save(args.keep_table)
    _save(args, out)
    t0 = time.perf_counter()
    report = validate_table(table, space, args.specs, seed=1)
    out["validate"] = {"seconds": time.perf_counter() - t0, "summary": report.summary(),
                       "models": report.models, "rows": report.rows}
    _save(args, out)
    if args.compare:
        out["compare"] = _compare(args, space, report)
        _save(args, out)
    t0 = time.perf_counter()
    out["spread"] = repeat_spread(table, space, args.spread_specs, args.spread_times, seed=2)
    out["spread"]["seconds"] = time.perf_counter() - t0
    out["spread_other_threads"] = {}
    for threads in args.spread_threads:  # the floor at another thread count: no cells needed
        if threads != args.threads:
            other = dataclasses.replace(table, settings={**table.settings, "threads": threads})
            out["spread_other_threads"][str(threads)] = repeat_spread(
                other, space, args.spread_specs, args.spread_times, seed=2)
    _save(args, out)
    if args.shares:
        t0 = time.perf_counter()
        rows = []
        for backbone, stage, size in STAGES:
            rows += module_shares(backbone, stage, size, list(MODULES), threads=args.threads,
                                  warmup=args.warmup, repeats=args.repeats)
        out["shares"] = {"seconds": time.perf_counter() - t0, "rows": rows}
    return out


def _compare(args: argparse.Namespace, space: Any, report: Any) -> dict[str, Any]:
    """A table of the other granularity, built with the same settings, judged on the same
    specs and the same whole-network timings as the main one."""
    from nas_attn.cost.cells import GRANULARITIES
    from nas_attn.latency import build_table, validate_table

    other = next(g for g in GRANULARITIES if g != args.granularity)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        table = build_table(space, Path(tmp) / "t.json", runtime="onnxruntime",
                            threads=args.threads, input_size=args.input_size,
                            calibrate=args.calibrate, seed=0, warmup=args.warmup,
                            repeats=args.repeats, granularity=other)
    seconds = time.perf_counter() - t0
    same = validate_table(table, space, args.specs, seed=1, measured_ms={
        r["spec_hash"]: r["measured_ms"] for r in report.rows})
    return {"granularity": other, "seconds": seconds, "cells": len(table.cells),
            "model": table.correction["model"], "summary": same.summary(),
            "models": same.models}


def markdown(r: dict[str, Any]) -> str:
    from nas_attn.latency.shares import shares_markdown

    b, v, s = r["build"], r["validate"], r["spread"]
    corr = b["correction"]
    cv = corr.get("cv", {}).get(corr["model"])
    lines = [f"### Latency table: {r['study']}, onnxruntime, {r['threads']} thread(s), input "
             f"{'x'.join(map(str, r['input_size']))}, {r.get('granularity', 'cell')} cells",
             "",
             f"Machine: {b['fingerprint'].get('cpu')}, onnxruntime "
             f"{b['fingerprint'].get('onnxruntime')}, torch {b['fingerprint'].get('torch')}.", "",
             "| step | figure |", "|---|---|",
             f"| build | {b['cells']} cells in {b['seconds']:.0f} s; overhead "
             f"{b['overhead_ms']:.4f} ms per call; model **{corr['model']}**"
             + (f" (leave-one-out on {cv['specs']} calibration networks: {_line(cv)})" if cv
                else "") + " |",
             f"| validate, {v['summary']['specs']} specs | **{_line(v['summary'])}** |"]
    lines += [f"| ... refitted {m} | {_line(x)} |" for m, x in v["models"].items()]
    if "compare" in r:
        c = r["compare"]
        lines.append(f"| {c['granularity']} granularity, same specs and timings | {c['cells']} "
                     f"cells in {c['seconds']:.0f} s (with its calibration); model "
                     f"**{c['model']}**: {_line(c['summary'])} |")
        lines += [f"| ... refitted {m} | {_line(x)} |" for m, x in c["models"].items()]
    lines.append(f"| spread: {len(s['rows'])} networks x {s['times']} | one median against its "
                 f"network's median of medians: {_line(s['summary'])} |")
    for threads, o in r.get("spread_other_threads", {}).items():
        lines.append(f"| spread at {threads} thread(s), same networks | {_line(o['summary'])} |")
    if "shares" in r:
        lines += ["", "### Module shares (docs/cost-model.md)", "",
                  shares_markdown(r["shares"]["rows"])]
    return "\n".join(lines)


def main() -> None:
    from nas_attn.cost.cells import GRANULARITIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--input-size", type=int, nargs=3, default=None)
    p.add_argument("--calibrate", type=int, default=40)
    p.add_argument("--granularity", choices=GRANULARITIES, default="stage",
                   help="what one timed cell is (stage: stem, whole stages, head)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per timing")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per timing (median)")
    p.add_argument("--specs", type=int, default=50)
    p.add_argument("--spread-specs", type=int, default=10)
    p.add_argument("--spread-times", type=int, default=5)
    p.add_argument("--spread-threads", type=int, nargs="*", default=[1],
                   help="also measure the spread at these thread counts (none: skip)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the table of the other granularity")
    p.add_argument("--no-shares", dest="shares", action="store_false")
    p.add_argument("--keep-table", type=Path, default=None, help="also save the table here")
    p.add_argument("--json", type=Path, default=Path("latency-bench.json"))
    args = p.parse_args()
    t0 = time.perf_counter()
    result = run(args)
    result["total_seconds"] = time.perf_counter() - t0
    _save(args, result)
    print(markdown(result))
    print(f"\n(total {result['total_seconds']:.0f} s; JSON: {args.json})")


if __name__ == "__main__":
    main()
