"""Peak memory (and CPU time) of the quickstart, all processes together.

Runs ``nas-attn search studies/quickstart.yaml`` as a subprocess and samples its whole process
tree (the driver, Ray's GCS, raylet, agents and trial workers) every 0.5 s with psutil (shipped
with Ray). Reported:

- ``peak_rss_sum_mib``: the largest sum of RSS over the tree at one instant (counts pages shared
  between processes once per process, so it over-states; the target is checked on it);
- ``peak_pss_sum_mib``: the same with PSS (shared pages split between their users), when the
  kernel exposes it;
- ``cpu_s``: CPU seconds used by the tree (last sample of each process), and ``wall_s``.
  On a busy machine ``cpu_s / cores`` estimates the wall time the same run needs on a quiet one.

Target: peak memory <= 4 GiB. Prints a table and one JSON line.

    .venv/bin/python benchmarks/bench_quickstart_memory.py [--study studies/quickstart.yaml]
        [--trials N] [--num-cpus 2]
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

import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path

TARGET_GIB = 4.0


def _tree(root: object) -> list:
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def sample(proc: subprocess.Popen, every: float = 0.5) -> dict[str, float]:
    import psutil

    root = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0.0
    at_peak: list[tuple[str, float]] = []
    cpu: dict[int, float] = {}
    n_max = 0
    while proc.poll() is None:
        rss = pss = 0.0
        rows = []
        procs = _tree(root)
        n_max = max(n_max, len(procs))
        for p in procs:
            try:
                with p.oneshot():
                    mem = p.memory_info()
                    t = p.cpu_times()
                rss += mem.rss
                rows.append((" ".join(p.cmdline())[:60], mem.rss / 2**20))
                try:
                    pss += p.memory_full_info().pss
                except (AttributeError, psutil.AccessDenied):
                    pss = float("nan")
                cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        if rss > peak_rss:
            peak_rss, at_peak = rss, rows
        peak_pss = max(peak_pss, pss) if pss == pss else peak_pss
        time.sleep(every)
    return {"peak_rss_sum_mib": peak_rss / 2**20, "peak_pss_sum_mib": peak_pss / 2**20,
            "cpu_s": sum(cpu.values()), "max_processes": n_max,
            "at_peak_mib": sorted(((n, round(m)) for n, m in at_peak), key=lambda r: -r[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/quickstart.yaml")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="nasattn-qs-")) / "run"
    cmd = [sys.executable, "-m", "nas_attn", "search", args.study, "--out", str(out),
           "--num-cpus", str(args.num_cpus), "--quiet"]
    if args.trials:
        cmd += ["--trials", str(args.trials)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    stats = sample(proc)
    log = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    if proc.returncode != 0:
        sys.exit(f"quickstart failed ({proc.returncode}):\n{log[-3000:]}")
    import nas_attn

    df = nas_attn.load_run(out).trials
    front = nas_attn.load_run(out).front()
    res = {
        "bench": "quickstart_memory", "study": args.study, "wall_s": round(wall, 1),
        "cpu_s": round(stats["cpu_s"], 1), "num_cpus": args.num_cpus,
        "quiet_wall_estimate_s": round(stats["cpu_s"] / args.num_cpus, 1),
        "peak_rss_sum_mib": round(stats["peak_rss_sum_mib"], 1),
        "peak_pss_sum_mib": round(stats["peak_pss_sum_mib"], 1),
        "max_processes": stats["max_processes"],
        "at_peak_mib": stats["at_peak_mib"][:6],
        "trials": int(df["counts"].fillna(False).astype(bool).sum()),
        "states": {str(k): int(v) for k, v in df["state"].value_counts().items()},
        "front_size": len(front), "best_accuracy": float(front["val_accuracy"].max()),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "target_gib": TARGET_GIB,
        "met": stats["peak_rss_sum_mib"] / 1024 <= TARGET_GIB,
        "run_dir": str(out),
    }
    for k, v in res.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
