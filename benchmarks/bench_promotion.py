"""Promotion in real searches: the same small study without early stopping, with it, with
``early_stopping.promote: true`` and with ``early_stopping.stop_dominated: true``; then GP with
early stopping, learning from the stopped trials (``search.learn_from_pruned``, its default)
and ignoring them.

The study is the quickstart's data and training (cluttered digits 16x16, 8 epochs of SGD,
rungs at epochs 2 and 4, eta 2) over a 24-architecture space (stage 0: none/SE/ECA/CBAM,
stage 2: none/SE/CBAM x standard/RFAConv convs), searched by TPE (seed 0) for 40 trials, two
1-thread trials at a time, so the sampler proposes architectures again and promotion happens.
Every run trains an architecture with the same seed, and CPU training is deterministic, so
an architecture's final accuracy is the same in every run where it trained in full; the
benchmark checks that, in particular that each promoted result equals the uninterrupted
training of the same architecture in the run without stopping, and takes the front of every
fully trained architecture of the three runs as the reference front.

Reported per run: wall time, epochs trained (a promoted trial counts only the epochs it adds),
trials trained / reused / pruned / promoted, the front found and its exact recall of the
reference front. Prints a table and one JSON line.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/bench_promotion.py [--trials 40]
        [--runs no-stopping stopping ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "quickstart.yaml"
SPACE = {"backbone": "tiny", "stages": {
    0: {"attention": {"none": None, "se": None, "eca": None, "cbam": None},
        "position": ["post_bn"]},
    2: {"attention": {"none": None, "se": None, "cbam": None}, "position": ["post_bn"],
        "conv": ["standard", "rfaconv"]}}}
STOPPING = {"enabled": True, "eta": 2, "grace_epochs": 2}
RUNS = {"no-stopping": {"enabled": False},
        "stopping": STOPPING,
        "stopping-promote": {**STOPPING, "promote": True},
        "stopping-dominated": {**STOPPING, "stop_dominated": True},
        "gp-stopping": STOPPING,
        "gp-stopping-ignore-pruned": STOPPING}
TPE_RUNS = ("no-stopping", "stopping", "stopping-promote", "stopping-dominated")  # the default
# the runs whose sampler is not the study's TPE: GP with 5 startup trials, learning from the
# stopped trials (its default, search.learn_from_pruned) or ignoring them (Optuna's GP)
SEARCH = {"gp-stopping": {"sampler": "gp", "startup_trials": 5},
          "gp-stopping-ignore-pruned": {"sampler": "gp", "startup_trials": 5,
                                        "learn_from_pruned": False}}


def study_file(folder: Path, name: str, early_stopping: dict, trials: int, seed: int) -> Path:
    raw = yaml.safe_load(STUDY.read_text())
    raw.update(name=f"promotion-{name}", space=SPACE, early_stopping=early_stopping)
    raw["search"] = {**raw["search"], "trials": trials, "sampler": "tpe", "seed": seed,
                     **SEARCH.get(name, {})}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_stats(out: Path) -> dict:
    import nas_attn

    run = nas_attn.load_run(out)
    trials = run.study.trials
    trained = [t for t in trials if "spec_hash" in t.user_attrs and not t.user_attrs.get("reused")]
    full = {t.user_attrs["spec_hash"]: t.values[0] for t in trained if t.state.name == "COMPLETE"}
    return {
        "epochs": sum(t.user_attrs.get("epochs_trained", 0) - t.user_attrs.get("resume_epoch", 0)
                      for t in trained),
        "trained": len(trained),
        "reused": sum(bool(t.user_attrs.get("reused")) for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trained),
        "promoted": sum("promoted_from" in t.user_attrs for t in trained),
        "promoted_complete": {t.user_attrs["spec_hash"]: t.values[0] for t in trained
                              if "promoted_from" in t.user_attrs and t.state.name == "COMPLETE"},
        "front": sorted(run.front()["spec_hash"]),
        "full": full,
        "flops": {t.user_attrs["spec_hash"]: t.user_attrs["flops"] for t in trained},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(TPE_RUNS),
                    help="which runs (default: the TPE ones; no-stopping is the reference the "
                         "promoted results are compared with)")
    args = ap.parse_args()
    from nas_attn.pareto import pareto_front_mask

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    stats: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, es in ((n, RUNS[n]) for n in args.runs):
            study = study_file(folder, name, es, args.trials, args.seed)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "nas_attn", "search", str(study), "--out",
                 str(folder / name), "--num-cpus", str(args.cpus), "--quiet"],
                env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"{name}: search failed\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
            stats[name] = {"wall_s": round(wall, 1), **run_stats(folder / name)}

    # every full training of one architecture must give the same accuracy (fixed seed, CPU)
    values: dict[str, set[float]] = {}
    flops: dict[str, float] = {}
    for s in stats.values():
        for h, v in s["full"].items():
            values.setdefault(h, set()).add(v)
        flops.update(s["flops"])
    disagree = sorted(h for h, vs in values.items() if len(vs) > 1)
    archs = sorted(values)
    points = [[max(values[h]), flops[h]] for h in archs]
    mask = pareto_front_mask(points, ["maximize", "minimize"])
    reference = {h for h, m in zip(archs, mask, strict=True) if m}

    straight = stats.get("no-stopping", {}).get("full", {})
    promoted = {h: v for s in stats.values() for h, v in s["promoted_complete"].items()}
    checked = {h: v == straight[h] for h, v in promoted.items() if h in straight}
    print(f"reference front: {len(reference)} of {len(archs)} fully trained architectures; "
          f"results that differ between runs: {len(disagree)}; promoted results equal to the "
          f"uninterrupted training: {sum(checked.values())} of {len(checked)} compared")
    print(f"{'run':26} {'wall s':>7} {'epochs':>7} {'trained':>8} {'reused':>7} {'pruned':>7} "
          f"{'promoted':>9} {'front':>6} {'recall':>7}")
    for name, s in stats.items():
        s["recall"] = round(len(reference & set(s["front"])) / len(reference), 3)
        print(f"{name:26} {s['wall_s']:7.1f} {s['epochs']:7d} {s['trained']:8d} "
              f"{s['reused']:7d} {s['pruned']:7d} {s['promoted']:9d} {len(s['front']):6d} "
              f"{s['recall']:7.2f}")
    for s in stats.values():
        del s["full"], s["flops"]
    print(json.dumps({"trials": args.trials, "seed": args.seed, "reference_front": len(reference),
                      "archs_trained_in_full": len(archs), "disagreeing": disagree,
                      "promoted_equal_uninterrupted": [sum(checked.values()), len(checked)],
                      "runs": stats}))


if __name__ == "__main__":
    main()
