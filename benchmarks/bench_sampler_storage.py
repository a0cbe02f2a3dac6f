"""Sampler + storage time per trial as a study grows: trial 1,000 against trial 100.

What the search driver does per proposal, without Ray and without training: ``study.ask()``
with the runner's TPE sampler (``make_sampler("tpe")``: multivariate; multi-objective:
accuracy max, FLOPs min), ``space.suggest(trial)`` on the real search space of
``search_spaces/quickstart.yaml``, the spec hash, the user attrs the searcher writes (run id,
spec hash, spec JSON, flops, params) and ``study.tell`` with values from a synthetic objective
(a fixed function of the spec hash), all against an SQLite ``RDBStorage`` opened exactly as
the runner opens it. FLOPs are not counted with fvcore (that
is the cost model, not the sampler); a deterministic stand-in is used.

Reported: the median time per trial over a window of trials around trial 100 and around trial
1,000 (``--window`` trials each side), and their ratio. Target: ratio <= 2.0.
Prints a table and one JSON line.

    .venv/bin/python benchmarks/bench_sampler_storage.py [--trials 1010] [--window 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

TARGET = 2.0


def objective(spec_hash: str) -> tuple[float, float]:
    """A fixed (accuracy, flops) per architecture (pure)."""
    h = int(spec_hash[:12], 16)
    return 0.5 + 0.45 * (h % 1000) / 999, 6.5e6 + (h >> 10) % 500_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1010)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--space", default="search_spaces/quickstart.yaml")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.trials < 1000 + args.window:
        raise SystemExit(f"--trials must be >= {1000 + args.window}")

    import optuna

    from nas_attn.arch import spec_hash
    from nas_attn.search.samplers import make_sampler
    from nas_attn.search.storage import default_url, open_storage
    from nas_attn.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    run_dir = Path(tempfile.mkdtemp(prefix="nasattn-sampler-"))
    storage = open_storage(default_url(run_dir))
    study = optuna.create_study(study_name="bench", storage=storage,
                                directions=["maximize", "minimize"],
                                sampler=make_sampler("tpe", args.seed))
    per_trial: list[float] = []
    t_all = time.perf_counter()
    for _ in range(args.trials):
        t0 = time.perf_counter()
        trial = study.ask()
        spec = space.suggest(trial)
        h = spec_hash(spec)
        acc, flops = objective(hashlib.sha256(h.encode()).hexdigest())
        trial.set_user_attr("run_id", "bench")
        trial.set_user_attr("spec_hash", h)
        trial.set_user_attr("spec", json.dumps(spec.to_dict(), sort_keys=True))
        trial.set_user_attr("flops", flops)
        trial.set_user_attr("params", flops / 100)
        study.tell(trial, [acc, flops])
        per_trial.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all

    def around(n: int) -> float:
        return statistics.median(per_trial[n - args.window:n + args.window])

    at100, at1000 = around(100), around(1000)
    res = {"bench": "sampler_storage", "sampler": "tpe", "storage": "sqlite",
           "space": args.space, "trials": args.trials, "window": args.window,
           "ms_per_trial_at_100": round(at100 * 1e3, 2),
           "ms_per_trial_at_1000": round(at1000 * 1e3, 2),
           "ratio": round(at1000 / at100, 3), "target": TARGET,
           "met": at1000 / at100 <= TARGET, "total_s": round(total, 1)}
    for k, v in res.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
