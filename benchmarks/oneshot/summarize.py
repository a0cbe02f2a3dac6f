"""Summarise measure.py's JSON files into docs/one-shot.md's tables (medians over supernet seeds).

The pipeline's metrics are recomputed from each run's stored predictions, for both
confirmation orders (``acc``, ``hv``: oneshot_ranking.confirmation_order). Scoring is counted
in stand-alone epochs by images: each architecture forwards ``calib_batches x batch`` training
images and the validation set once; a training image costs three forwards (forward and
backward), so one epoch is ``3 x steps x batch`` forward images.

    python benchmarks/oneshot/summarize.py benchmarks/oneshot/data/*.json
"""

from __future__ import annotations

import functools
import json
import sys
from collections import defaultdict
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
    top_k_recall,
)

from attnbench.generate import TABLE_DATA, TABLE_SPACES, TABLE_TRAIN, table_space  # noqa: E402
from attnbench.metrics import FrontScorer, spearman  # noqa: E402
from attnbench.table import load_table  # noqa: E402

STRICT = 0.995  # above what the cheapest architecture alone holds on either table


def scoring_epochs(n_archs: int, calib_batches: int) -> float:
    batch = TABLE_TRAIN["batch_size"]
    steps = TABLE_DATA["train_size"] // batch
    per_arch = calib_batches * batch + TABLE_DATA["val_size"]
    return n_archs * per_arch / (3 * steps * batch)


@functools.cache
def table_options(name: str) -> list[list[int]]:
    """Per stage, each of table ``name``'s architectures' option index in its supernet."""
    from nas_attn.oneshot import stage_options

    space = table_space(TABLE_SPACES[name])
    options = [stage_options(space, s) for s in range(len(space.stages))]
    table = load_table(ROOT / "benchmarks" / "tabular" / "data" / f"{name}.npz")
    return option_index(options, [space.build(p) for p in table.arch_params])


def additive_reference(name: str, table) -> np.ndarray:
    """Each architecture's sum over stages of the table's mean accuracy of its stage's option:
    the best any ranking by per-stage probabilities can do (in-sample)."""
    opt_of = [np.asarray(o) for o in table_options(name)]
    return sum(np.array([table.final_mean[o == k].mean() for k in range(o.max() + 1)])[o]
               for o in opt_of)


def chance_rho(name: str, table, draws: int = 1000) -> np.ndarray:
    """Spearman's rho of the ranking by random per-stage distributions (each stage's drawn from
    a flat Dirichlet): what a learned distribution's ranking is measured against."""
    rng = np.random.default_rng(0)
    opt_of = table_options(name)
    counts = [max(o) + 1 for o in opt_of]
    return np.array([spearman(log_probability([rng.dirichlet(np.ones(n)) for n in counts],
                                              opt_of), table.final_mean)
                     for _ in range(draws)])


def table_row(r: dict, t, pred: np.ndarray, scoring: float) -> dict:
    """One run's figures for the table, ``pred`` its ranking of every architecture."""
    scorer = FrontScorer.of(t)
    row = {"tau": kendall(pred, t.final_mean), "rho": spearman(pred, t.final_mean),
           "top10_recall": top_k_recall(pred, t.true_front, 10),
           "top20_recall": top_k_recall(pred, t.true_front, 20), "scoring": scoring,
           **{k: r[k] for k in ("supernet_cost_epochs", "supernet_train_s", "seed")}}
    for order in ORDERS:
        c = pipeline_cost(pred, scorer, t.flops, r["supernet_cost_epochs"], order=order)
        row[f"{order}_conf"] = c.confirmations
        row[f"{order}_epochs"] = c.epochs
        row[f"{order}_k"] = c.predicted_front
        row[f"{order}_hv_k"] = c.hv_at_front
    strict = pipeline_cost(pred, scorer, t.flops, r["supernet_cost_epochs"], level=STRICT,
                           max_confirm=t.n_archs, order="hv")
    row["strict_epochs"] = strict.epochs
    return row


def main(paths: list[str]) -> None:
    runs = []
    for p in paths:
        runs.extend(json.loads(Path(p).read_text())["runs"])
    tables = {name: load_table(ROOT / "benchmarks" / "tabular" / "data" / f"{name}.npz")
              for name in {r["table"] for r in runs}}
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in runs:
        t = tables[r["table"]]
        mode = r["mode"] + (f" (arch lr {r['arch_lr']:g})" if "arch_lr" in r else "")
        scoring = scoring_epochs(t.n_archs, r["calib_batches"])
        groups[r["table"], mode, str(r["epochs"])].append(
            table_row(r, t, np.asarray(r["pred"]), scoring))
        if r["mode"] == "learned":  # the learned distribution alone: nothing scored
            r["path_prob"] = np.exp(log_probability(r["arch_probs"], table_options(r["table"])))
            groups[r["table"], mode, f"{r['epochs']}, ranked by path probability"].append(
                table_row(r, t, r["path_prob"], 0.0))
    print("| table | supernet | seeds | tau | rho | top-10 / top-20 recall | predicted front "
          "(K), HV after K | confirmations to 95 % (acc / hv order) | epochs to 95 %: "
          "training + confirmation (acc / hv) | + scoring | epochs to 99.5 % (hv) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (table, mode, epochs), rows in sorted(groups.items()):
        def med(key: str, rows: list[dict] = rows) -> float:
            return float(np.median([r[key] for r in rows]))

        seeds = ",".join(str(r["seed"]) for r in sorted(rows, key=lambda r: r["seed"]))
        print(f"| {table} | {mode} {epochs} (cost {med('supernet_cost_epochs'):.0f}) | {seeds} "
              f"| {med('tau'):.2f} | {med('rho'):.2f} "
              f"| {med('top10_recall'):.2f} / {med('top20_recall'):.2f} "
              f"| {med('acc_k'):.0f}, {med('acc_hv_k'):.3f} "
              f"| {med('acc_conf'):.0f} / {med('hv_conf'):.0f} "
              f"| {med('acc_epochs'):.0f} / {med('hv_epochs'):.0f} "
              f"| +{med('scoring'):.0f} | {med('strict_epochs'):.0f} |")
    print()
    for name, t in sorted(tables.items()):
        cheap = int(np.argmin(t.flops))
        epoch1 = np.mean([spearman(t.acc[:, s, 0], t.final_mean) for s in range(t.n_seeds)])
        print(f"{name}: the cheapest architecture alone holds "
              f"{FrontScorer.of(t).score([cheap])['hv_ratio']:.3f} of the true front's HV; "
              f"ranking by FLOPs (fewer first): rho {spearman(-t.flops, t.final_mean):.3f}, "
              f"tau {kendall(-t.flops, t.final_mean):.3f}; stand-alone accuracy after epoch 1: "
              f"rho {epoch1:.3f}; the table's own per-stage option means, added (in-sample, "
              f"the bound of a ranking by per-stage probabilities): "
              f"rho {spearman(additive_reference(name, t), t.final_mean):.3f}")
        chance = chance_rho(name, t)
        print(f"{name}: ranking by random per-stage distributions (Dirichlet(1), 1,000 draws): "
              f"rho median {np.median(chance):.3f}, 95th percentile "
              f"{np.percentile(chance, 95):.3f}, max {chance.max():.3f}")
    for r in runs:
        if r["mode"] == "learned":
            print(f"learned {r['table']} seed {r['seed']} (arch lr {r.get('arch_lr', 'default')}):"
                  f" largest option probability per stage "
                  f"{[round(max(p), 3) for p in r['arch_probs']]} (uniform "
                  f"{[round(1 / len(p), 3) for p in r['arch_probs']]}); per-stage rho of the "
                  f"probabilities with the table {[round(v, 2) for v in r['prob_rho']]}; ranking "
                  f"by log-probability: tau {r['logp_tau']:.3f}, rho {r['logp_rho']:.3f}")
    print("per run (tau, rho, epochs to 95 % acc / hv order):")
    for key, rows in sorted(groups.items()):
        print(" ", key, [(r["seed"], round(r["tau"], 3), round(r["rho"], 3), r["acc_epochs"],
                          r["hv_epochs"]) for r in rows])


if __name__ == "__main__":
    main(sys.argv[1:])
