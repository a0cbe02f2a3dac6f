"""Pilot: how early do accuracy curves rank architectures, under candidate table regimes?

Before spending an hour of two cores on a table, train a random sample of its architectures
to the full budget under each candidate regime (data, training, space) and measure what
decides whether a search and early stopping can work on it:

- ``rho@e``: Spearman's rho between accuracy after epoch e and the final accuracy of the same
  training (``attnbench.metrics.rho_by_epoch``);
- ``seed rho``: rho between seeds' final accuracies, mean over pairs of seeds
  (``attnbench.metrics.seed_rho``: is the ranking reproducible at all?);
- the spread of the architectures' mean final accuracy against the median seed std.

    .venv/bin/python benchmarks/tabular/pilot_regimes.py --archs 40 --seeds 0 1 --workers 16

Trainings run in a process pool (one thread each), not through Ray: this is a pilot, not a
table. Regimes are named overrides (``REGIMES``) of the table's space and data
(``attnbench.generate``) and of ``BASE_TRAIN``, the recipe of the first converged table
(AdamW), so that a rerun measures the same regimes whatever the shipped table's recipe.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from attnbench import generate as gen
from attnbench.metrics import FrontScorer, random_sampler_weights, rho_by_epoch, seed_rho
from attnbench.report import sampled_startup_bound
from attnbench.table import Table
from nas_attn.cost import profile

# The training recipe the regimes override: the 2026-11-25 table's AdamW (regime "table").
BASE_TRAIN: dict[str, Any] = {
    "epochs": 20, "batch_size": 64, "optimizer": "adamw", "lr": 0.01, "nesterov": False,
    "weight_decay": 0.01, "threads": 1,
}

# name -> overrides of (space stage default, data, train); "sgd" is the shipped table's recipe
REGIMES: dict[str, dict[str, dict[str, Any]]] = {
    "table": {},
    "lr003": {"train": {"lr": 0.003}},
    "clutter3": {"data": {"distractors": 3, "noise": 0.1}},
    "sgd": {"train": {"optimizer": "sgd", "lr": 0.05, "nesterov": True, "weight_decay": 5e-4}},
    "sgd_lr02": {"train": {"optimizer": "sgd", "lr": 0.02, "nesterov": True,
                           "weight_decay": 5e-4}},
    "sgd_e30": {"train": {"optimizer": "sgd", "lr": 0.05, "nesterov": True,
                          "weight_decay": 5e-4, "epochs": 30}},
    "sgd_warm": {"train": {"optimizer": "sgd", "lr": 0.05, "nesterov": True,
                           "weight_decay": 5e-4, "warmup_epochs": 2}},
    "ca_space": {"space": {"attention": {"none": None, "se": None, "cbam": None, "ca": None}}},
    "clutter3_ca": {"data": {"distractors": 3, "noise": 0.1},
                    "space": {"attention": {"none": None, "se": None, "cbam": None,
                                            "ca": None}}},
    "clutter3_lr003": {"data": {"distractors": 3, "noise": 0.1}, "train": {"lr": 0.003}},
    "big_train": {"data": {"train_size": 3072, "val_size": 1000}, "train": {"epochs": 10}},
    # a wide accuracy-vs-FLOPs trade-off: RFAConv where the maps are large (stages 0-1)
    "sgd_rfa": {"train": {"optimizer": "sgd", "lr": 0.05, "nesterov": True,
                          "weight_decay": 5e-4},
                "stages": gen.RFA_SPACE["stages"]},
}


def regime_settings(name: str) -> tuple[dict, dict, dict]:
    over = REGIMES[name]
    space = copy.deepcopy(gen.TABLE_SPACE)
    if "stages" in over:
        space["stages"] = copy.deepcopy(over["stages"])
    space["stages"]["default"].update(over.get("space", {}))
    return space, {**gen.TABLE_DATA, **over.get("data", {})}, {**BASE_TRAIN,
                                                                **over.get("train", {})}


def _train(job: tuple[dict, dict, dict, int]) -> list[float]:
    import torch

    torch.set_num_threads(1)
    from nas_attn.data import load_dataset
    from nas_attn.train import TrainConfig, train_spec

    spec, data, train, seed = job
    curve: list[float] = []

    def cb(r: Any) -> bool:
        curve.append(float(r.val_accuracy))
        return True

    train_spec(spec, load_dataset(dict(data)), TrainConfig(**{**train, "seed": seed}), cb)
    return curve


def summarize(acc: np.ndarray) -> dict[str, Any]:
    """``acc``: (archs, seeds, epochs)."""
    s = acc.shape[1]
    mean = acc[:, :, -1].mean(axis=1)
    return {
        "rho_by_epoch": [round(float(r), 3) for r in rho_by_epoch(acc)],
        "seed_rho": round(seed_rho(acc), 3) if s > 1 else None,
        "final_mean_q05_50_95": [round(float(q), 4) for q in np.quantile(mean, [.05, .5, .95])],
        "final_mean_std": round(float(mean.std()), 4),
        "median_seed_std": round(float(np.median(acc[:, :, -1].std(axis=1, ddof=1))), 4)
        if s > 1 else None,
    }


def additive_fit(final: np.ndarray, pick: np.ndarray, params: list[dict]) -> np.ndarray:
    """Every architecture's final accuracy predicted from the sample's (``final[i]`` of
    architecture ``pick[i]``) by least squares on one indicator per (decision, choice): each
    stage's choice adds its own effect, no interactions and no noise."""
    cols = sorted({f"{k}={v!r}" for p in params for k, v in p.items()})
    col = {c: i for i, c in enumerate(cols)}
    x = np.zeros((len(params), len(cols) + 1))
    x[:, -1] = 1.0
    for a, p in enumerate(params):
        for k, v in p.items():
            x[a, col[f"{k}={v!r}"]] = 1.0
    coef, *_ = np.linalg.lstsq(x[pick], final, rcond=None)
    return np.clip(x @ coef, 0.0, 1.0)


def speedup_bound(acc: np.ndarray, pick: np.ndarray, params: list[dict], flops: list[float]
                  ) -> dict[str, Any]:
    """How much any sampler with 10 random startup trials could gain over random search on the
    space, read twice (``attnbench.report.sampled_startup_bound``; random search draws
    with Optuna's RandomSampler probabilities, ``random_sampler_weights`` of the whole space).

    ``acc``: the sampled architectures' curves, ``(len(pick), seeds, epochs)``; ``params`` and
    ``flops``: every architecture of the space (FLOPs need no training).

    - ``sample``: on the sample alone (means over seeds). Biased low: a sample holds fewer
      near-front architectures than its space, so its front is easier to reach.
    - ``additive``: on the whole space, accuracies predicted by :func:`additive_fit`. Biased
      high: without noise or interactions the best choices stand out more than they do.

    On ten 48-architecture samples of ``attention343`` (seeds 0-1) the two read 1.0-1.36
    (median 1.0) and 1.73-4.91 (median 2.6) where the whole table reads 1.64
    (docs/tabular-benchmark.md): the bracket, not either end, is the evidence."""
    pick = np.asarray(pick)
    weights = random_sampler_weights(params)
    ones = np.ones(len(params), dtype=np.int64)
    sample = Table(acc=acc, flops=np.asarray(flops)[pick], params=ones[pick],
                   arch_params=[params[i] for i in pick], seeds=np.arange(acc.shape[1]))
    pred = additive_fit(acc[:, :, -1].mean(axis=1), pick, params)
    model = Table(acc=np.repeat(pred[:, None, None], 2, axis=1), flops=flops, params=ones,
                  arch_params=params, seeds=[0, 1])  # two equal "seeds": std 0
    out: dict[str, Any] = {}
    for name, table, w in (("sample", sample, weights[pick]), ("additive", model, weights)):
        b = sampled_startup_bound(FrontScorer.of(table), w)
        out[name] = {"front": len(table.true_front), "median_random_to_95": b["median_random"],
                     "median_oracle_to_95": b["median_oracle"],
                     "max_speedup": round(b["max_speedup"], 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--archs", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--epochs", type=int, default=None, help="override every regime's epochs")
    p.add_argument("--out", default=None, help="write the summaries (and curves) as JSON")
    args = p.parse_args(argv)

    results: dict[str, Any] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for name in args.regimes:
            t0 = time.time()
            space, data, train = regime_settings(name)
            if args.epochs is not None:
                train["epochs"] = args.epochs
            archs = gen.enumerate_archs(gen.table_space(space))
            pick = np.random.default_rng(0).choice(len(archs), min(args.archs, len(archs)),
                                                   replace=False)
            jobs = [(archs[a][1].to_dict(), data, train, s) for a in pick for s in args.seeds]
            size = tuple(space["input_size"])
            flops = [float(profile(spec, input_size=size).flops) for _, spec in archs]
            params = [p for p, _ in archs]
            curves = list(pool.map(_train, jobs))
            acc = np.array(curves, dtype=np.float64).reshape(len(pick), len(args.seeds), -1)
            summary = {**summarize(acc),
                       "speedup_bound": speedup_bound(acc, pick, params, flops)}
            summary["seconds"] = round(time.time() - t0, 1)
            results[name] = {**summary, "space_size": len(archs), "data": data, "train": train,
                             "acc": acc.round(4).tolist(), "pick": pick.tolist(),
                             "flops": [flops[a] for a in pick],
                             "params": [params[a] for a in pick]}
            print(name, json.dumps(summary), flush=True)
            if args.out:  # after each regime: a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
