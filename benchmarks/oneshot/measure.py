"""Measure the supernet against the tabular benchmark (docs/one-shot.md).

For each table, mode (spos / fairnas / learned), supernet epochs and supernet seed: build the table's
space's supernet, train it on the table's data with the table's recipe (only the epochs
changed), score every architecture of the table with inherited weights and recalibrated
BatchNorm, and compare with the table's mean final accuracy: Kendall's tau, Spearman's rho,
recall of the true front in the predicted top 10 / 20, and the pipeline's compute to 95 % of
the true front's hypervolume (supernet training at its real cost, in stand-alone epochs, plus
20 epochs per confirmed architecture, read from the table).

    python benchmarks/oneshot/measure.py --tables attention343 rfa256 \\
        --runs spos:20 fairnas:3 --seeds 0 1 2 --json benchmarks/oneshot/data/measure.json

``learned:24`` trains learned switch weights (``--arch-lr``, ``--arch-split``); with the default
split of 0.25, 24 epochs cost 20 stand-alone epochs (18 weight steps and 6 held-out forwards
of a third each per 24-batch epoch), SPOS 20's cost. Its run also records the learned
per-stage probabilities, their agreement with the table per option (``prob_rho``) and the
ranking by the learned distribution alone (``logp_tau``, ``logp_rho``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "tabular"), str(Path(__file__).parent)]

from oneshot_ranking import (  # noqa: E402
    ORDERS,
    kendall,
    log_probability,
    option_index,
    pipeline_cost,
    seed_kendall,
    top_k_recall,
)

from attnbench.generate import TABLE_DATA, TABLE_SPACES, TABLE_TRAIN, table_space  # noqa: E402
from attnbench.metrics import FrontScorer, seed_rank_correlation, spearman  # noqa: E402
from attnbench.table import load_table  # noqa: E402
from nas_attn.data import load_dataset  # noqa: E402
from nas_attn.oneshot import (  # noqa: E402
    build_supernet,
    calibration_batches,
    score,
    train_supernet,
)
from nas_attn.train import TrainConfig  # noqa: E402


def ceiling(table) -> dict[str, float]:
    """The table's own reproducibility: seed vs seed, and one seed vs the mean of the others."""
    final = table.acc[:, :, -1].astype(float)
    loo_rho = [spearman(final[:, s], np.delete(final, s, axis=1).mean(axis=1))
               for s in range(final.shape[1])]
    loo_tau = [kendall(final[:, s], np.delete(final, s, axis=1).mean(axis=1))
               for s in range(final.shape[1])]
    return {"seed_rho": seed_rank_correlation(table), "seed_tau": seed_kendall(table.acc),
            "seed_vs_rest_rho": float(np.mean(loo_rho)),
            "seed_vs_rest_tau": float(np.mean(loo_tau))}


def stage_agreement(table, pred: np.ndarray, space) -> list[float]:
    """Per stage, Spearman's rho between the predicted and the table's mean accuracy of each
    of the stage's choices (averaged over the architectures that make it)."""
    out = []
    for s in range(len(space.stages)):
        keys = [json.dumps({k: v for k, v in p.items() if k.startswith(f"stage{s}.")},
                           sort_keys=True) for p in table.arch_params]
        groups = sorted(set(keys))
        t = [table.final_mean[[k == g for k in keys]].mean() for g in groups]
        q = [pred[[k == g for k in keys]].mean() for g in groups]
        out.append(spearman(np.array(t), np.array(q)))
    return out


def learned_summary(sn, specs, truth: np.ndarray) -> dict:
    """What the learned distribution says on its own: per stage, Spearman's rho between each
    option's probability and the table's mean accuracy of the architectures that make it; and
    the ranking of every architecture by its log-probability under the distribution."""
    probs = sn.arch_probabilities()
    opt_of = option_index(sn.options, specs)
    prob_rho = []
    for s, p in enumerate(probs):
        of = np.array(opt_of[s])
        table_mean = np.array([truth[of == o].mean() for o in range(len(p))])
        prob_rho.append(spearman(np.array(p), table_mean))
    logp = log_probability(probs, opt_of)
    return {"arch_probs": [[round(v, 4) for v in p] for p in probs], "prob_rho": prob_rho,
            "logp_tau": kendall(logp, truth), "logp_rho": spearman(logp, truth)}


def _score_all(sn, specs, data, calib, cfg, threads: int, which=None):
    """Predicted accuracy and milliseconds of the architectures ``which`` (default all)."""
    import torch

    which = range(len(specs)) if which is None else which
    pred, ms = {}, {}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i in which:
            s = score(sn, specs[i], data, calib, cfg.eval_batch_size)
            pred[i], ms[i] = s.val_accuracy, s.ms
    finally:
        torch.set_num_threads(old)
    return pred, ms


def one_run(name: str, table, mode: str, epochs: str, seed: int, calib_batches: int,
            threads: int, learned: dict | None = None) -> dict:
    """``mode`` spos / fairnas with ``epochs`` "E", or fewshot with "E1+E2@S": SPOS for E1
    epochs, then one sub-supernet per option of stage S, each fine-tuned E2 epochs (SPOS with
    that option fixed) and scoring the architectures that make that choice."""
    import copy

    space = table_space(TABLE_SPACES[name])
    data = load_dataset(TABLE_DATA)
    specs = [space.build(p) for p in table.arch_params]
    base_epochs, split = (epochs, None)
    if mode == "fewshot":
        base_epochs, rest = epochs.split("+")
        split = tuple(int(v) for v in rest.split("@"))  # (fine-tune epochs, stage)
    cfg = TrainConfig(**{**TABLE_TRAIN, "epochs": int(base_epochs), "threads": threads,
                         "device": "cpu", "seed": seed})
    sn = build_supernet(space, seed=seed)
    training = train_supernet(sn, data, cfg, "spos" if mode == "fewshot" else mode, seed=seed,
                              learned=learned if mode == "learned" else None)
    cost_epochs, train_s = training.cost_epochs, training.train_time_s
    calib = calibration_batches(data, calib_batches, cfg.batch_size, seed=seed)
    if split is None:
        pred_d, ms_d = _score_all(sn, specs, data, calib, cfg, threads)
    else:
        e2, stage = split
        opt_of = option_index(sn.options, specs)[stage]
        shared = copy.deepcopy(sn.state_dict())
        pred_d, ms_d = {}, {}
        sub_cfg = TrainConfig(**{**vars(cfg), "epochs": e2})
        for o in range(len(sn.options[stage])):
            sn.load_state_dict(shared)
            sub = train_supernet(sn, data, sub_cfg, "spos", seed=seed + 1 + o,
                                 fixed={stage: o})
            cost_epochs += sub.cost_epochs
            train_s += sub.train_time_s
            p, m = _score_all(sn, specs, data, calib, cfg, threads,
                              [i for i, v in enumerate(opt_of) if v == o])
            pred_d.update(p)
            ms_d.update(m)
    pred = np.array([pred_d[i] for i in range(len(specs))])
    ms = np.array([ms_d[i] for i in range(len(specs))])
    scorer = FrontScorer.of(table)
    per_epoch_s = train_s / cost_epochs
    scoring_epochs = float(ms.sum() / 1000 / per_epoch_s)
    truth = table.final_mean
    out = {
        "table": name, "mode": mode, "epochs": epochs, "seed": seed,
        "calib_batches": calib_batches,
        "tau": kendall(pred, truth), "rho": spearman(pred, truth),
        "top10_recall": top_k_recall(pred, table.true_front, 10),
        "top20_recall": top_k_recall(pred, table.true_front, 20),
        "supernet_cost_epochs": cost_epochs, "scoring_cost_epochs": scoring_epochs,
        "supernet_train_s": train_s, "ms_per_arch_median": float(np.median(ms)),
        "pred_acc_range": [float(pred.min()), float(pred.max())],
        "stage_rho": stage_agreement(table, pred, space),
        "final_train_loss": training.epochs[-1].train_loss,
    }
    if mode == "learned":
        out.update({**(learned or {}), **learned_summary(sn, specs, truth)})
    for order in ORDERS:
        cost = pipeline_cost(pred, scorer, table.flops, cost_epochs, order=order)
        out[f"{order}_predicted_front"] = cost.predicted_front
        out[f"{order}_hv_at_predicted_front"] = cost.hv_at_front
        out[f"{order}_confirmations_to_95"] = cost.confirmations
        out[f"{order}_epochs_to_95"] = cost.epochs
        out[f"{order}_epochs_to_95_with_scoring"] = cost.epochs + scoring_epochs
    out["pred"] = pred.round(4).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", nargs="+", default=["attention343", "rfa256"])
    ap.add_argument("--runs", nargs="+", default=["spos:20", "fairnas:3"],
                    help="mode:epochs of supernet training (spos:20, fairnas:3, learned:24), or "
                    "fewshot:E1+E2@STAGE (SPOS E1 epochs, then a sub-supernet per option of "
                    "STAGE fine-tuned E2 epochs)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arch-lr", type=float, default=None,
                    help="learned: Adam's step on the logits (default LearnedSettings')")
    ap.add_argument("--arch-split", type=float, default=None,
                    help="learned: share of the training images held out for the logits")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {"command": " ".join(sys.argv), "ceiling": {}, "runs": []}
    if args.json and args.json.exists():
        out = json.loads(args.json.read_text())
    for name in args.tables:
        table = load_table(ROOT / "benchmarks" / "tabular" / "data" / f"{name}.npz")
        out["ceiling"][name] = ceiling(table)
        print(name, {k: round(v, 3) for k, v in out["ceiling"][name].items()}, flush=True)
        for run in args.runs:
            mode, epochs = run.split(":")
            for seed in args.seeds:
                t0 = time.perf_counter()
                learned = {k: v for k, v in (("arch_lr", args.arch_lr),
                                             ("arch_split", args.arch_split)) if v is not None}
                r = one_run(name, table, mode, epochs, seed, args.calib_batches,
                            args.threads, learned)
                r["wall_s"] = time.perf_counter() - t0
                r["command"] = " ".join(sys.argv)
                out["runs"].append(r)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                       if k != "pred"}, flush=True)
                if args.json:
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
