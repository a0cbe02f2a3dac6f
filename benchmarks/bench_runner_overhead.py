"""Runner overhead: N one-epoch trials through ``nas-attn search`` against the same N trainings
in one bare process, in the same benchmark run.

The study is ``studies/quickstart.yaml`` with ``train.epochs: 1`` and early stopping off (so
every trial trains exactly one epoch) and the random sampler, over ``--space`` (default
``search_spaces/quickstart_attention.yaml``: one network size, the workload every recorded
figure was measured on; the quickstart's own space also draws networks 8x smaller, whose
shorter trainings make the same fixed costs a larger share). Both sides run as fresh
processes timed from the outside, on the same data, with the same training settings and the
same number of threads:

1. ``nas-attn search STUDY --trials N --max-concurrent 1 --cpus-per-trial C --num-cpus C``
   (Ray start, driver, Optuna storage, one reused worker with the dataset resident, trials
   table at the end);
2. one plain Python process that loads the dataset once and calls ``train_spec`` on the
   architectures the search trained, in the same order (C threads).

Reported: both wall times, the overhead per trial ``(search - bare) / N`` and the ratio; the
search's start-up (process start to its first trial) and its first trial (the worker's cold
start: imports, dataset) separately; and the steady state: the median trial after the first
against the median bare training after the first. Target: ratio <= 1.15. The fixed costs (Ray
start, a worker's cold start, shutdown) are paid once per run, so the ratio falls with N.
Prints a table and one JSON line.

    .venv/bin/python benchmarks/bench_runner_overhead.py [--trials 24] [--cpus 2] [--space FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.15
ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "quickstart.yaml"
SPACE = ROOT / "search_spaces" / "quickstart_attention.yaml"


def bench_study(folder: Path, space: Path = SPACE) -> Path:
    """The quickstart with one epoch, no early stopping, the random sampler, over ``space``."""
    import yaml

    raw = yaml.safe_load(STUDY.read_text())
    raw["name"] = f"overhead-{os.getpid()}"
    raw["space"] = str(Path(space).resolve())
    raw["train"] = {**raw["train"], "epochs": 1, "threads": None}
    raw["early_stopping"] = {"enabled": False}
    raw["search"] = {**raw.get("search", {}), "sampler": "random"}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def bare(study_path: str, specs_path: str, threads: int) -> None:
    """The bare side (runs in its own process): load data once, train every spec one epoch."""
    import dataclasses

    from nas_attn.data import load_dataset
    from nas_attn.search.study import load_study
    from nas_attn.train import TrainConfig, train_spec

    study = load_study(study_path)
    data = load_dataset(dict(study.resolved()["data"]))
    cfg = TrainConfig(**{**dataclasses.asdict(study.train), "threads": threads})
    times = []
    for spec in json.loads(Path(specs_path).read_text()):
        t0 = time.perf_counter()
        train_spec(spec, data, cfg)
        times.append(time.perf_counter() - t0)
    Path(specs_path).with_suffix(".times.json").write_text(json.dumps(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--space", type=Path, default=SPACE)
    ap.add_argument("--bare", nargs=2, metavar=("STUDY", "SPECS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        bare(args.bare[0], args.bare[1], args.cpus)
        return

    import nas_attn

    folder = Path(tempfile.mkdtemp(prefix="nasattn-overhead-"))
    study = bench_study(folder, args.space)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    load_before = os.getloadavg()
    t0 = time.time()
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(study), "--trials", str(args.trials),
         "--max-concurrent", "1", "--cpus-per-trial", str(args.cpus), "--num-cpus",
         str(args.cpus), "--out", str(folder / "run"), "--quiet"],
        env=env, capture_output=True, text=True)
    search_s = time.time() - t0
    if res.returncode != 0:
        sys.exit(f"search failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    df = nas_attn.load_run(folder / "run").trials
    trained = df[(df["counts"] == True) & (df["reused"] != True)].sort_values("number")  # noqa: E712
    first_start = trained["datetime_start"].min().timestamp()
    specs = [json.loads(s) for s in trained["spec"]]
    (folder / "specs.json").write_text(json.dumps(specs))

    t1 = time.time()
    subprocess.run([sys.executable, __file__, "--cpus", str(args.cpus), "--bare", str(study),
                    str(folder / "specs.json")], env=env, check=True)
    bare_s = time.time() - t1
    n = len(specs)
    bare_each = json.loads((folder / "specs.times.json").read_text())
    search_each = list(trained["duration_s"])
    # steady state: trials after the first (the first pays the worker's cold start)
    steady = statistics.median(search_each[1:]) - statistics.median(bare_each[1:]) if n > 1 \
        else float("nan")
    out = {
        "bench": "runner_overhead", "trials": args.trials, "trained": n, "cpus": args.cpus,
        "search_s": round(search_s, 2), "bare_s": round(bare_s, 2),
        "overhead_per_trial_s": round((search_s - bare_s) / n, 3),
        "ratio": round(search_s / bare_s, 3),
        "search_startup_s": round(first_start - t0, 2),
        "first_trial_s": round(search_each[0], 2),
        "steady_overhead_per_trial_s": round(steady, 3),
        "steady_ratio": round(statistics.median(search_each[1:]) / statistics.median(bare_each[1:]),
                              3) if n > 1 else None,
        "target": TARGET, "met": search_s / bare_s <= TARGET,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    for k, v in out.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
