"""Replay random search, TPE, NSGA-II and GP, with and without Pareto successive halving,
against the tabular benchmark; print the metrics and the issue's targets.

    .venv/bin/python benchmarks/tabular/replay.py \
        --table benchmarks/tabular/data/attention343.npz --reps 20 --trials 300 --workers 2 \
        --json benchmarks/tabular/data/replay_results.json --svg docs/tabular-benchmark.svg

GP (optuna's GPSampler) costs seconds per proposal at a few hundred trials, so it runs with
``--gp-reps`` repetitions of ``--gp-trials`` trials (0 leaves it out) and is timed apart from
the 20 x 300 replay of the other methods.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from attnbench.metrics import FrontScorer, rank_correlation_by_epoch, seed_rank_correlation
from attnbench.replay import Method, replay, summarize
from attnbench.report import (
    STARTUP_TRIALS,
    curves,
    curves_svg,
    epochs_to_levels,
    markdown_table,
    startup_bound,
    targets,
    truncate,
)
from attnbench.table import load_table
from nas_attn.search.pruning import HalvingConfig

GP_METHODS = ("plain", "es", "startup", "learn", "pause")


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else "inf"
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        return _clean(x.item())
    return x


def write(args: argparse.Namespace, table, configs, runs, main_s: float, gp_s: float | None
          ) -> None:
    summary = summarize(runs)
    goals = targets(summary, runs, table.n_archs)
    rho = [round(float(r), 3) for r in rank_correlation_by_epoch(table)]
    print(markdown_table(summary))
    seed_rho = round(seed_rank_correlation(table), 3)
    print("Spearman rho(accuracy at epoch e, final accuracy), e = 1..:", rho)
    print("Spearman rho(final accuracy of seed i, of seed j), mean over pairs:", seed_rho)
    print(json.dumps(_clean(goals), indent=1), flush=True)
    bounds = {}
    if "random" in runs:
        scorer = FrontScorer.of(table)
        for n in dict.fromkeys((STARTUP_TRIALS, *args.startup)):
            b = bounds[n] = startup_bound(runs["random"], scorer, startup=n)
            print(f"startup oracle ({n} random trials, then the best architectures knowing the "
                  f"table): median {b['median_oracle']:g} trials to {b['level']:.0%} HV against "
                  f"random search's {b['median_random']:g}: at most {b['max_speedup']:.2f}x "
                  f"faster (exact: {b['exact']})")
    if args.json:
        out = {"table": args.table, "table_summary": table.summary(),
               "halving": [{**c.to_dict(), "tag": t} for c, t in configs],
               "reps": args.reps, "trials": args.trials, "workers": args.workers,
               "replay_wall_seconds": round(main_s, 1),
               "gp": {"reps": args.gp_reps, "trials": args.gp_trials,
                      "wall_seconds": None if gp_s is None else round(gp_s, 1)},
               "rank_correlation_by_epoch": rho,
               "seed_rank_correlation": seed_rho, "summary": summary, "targets": goals,
               "epochs_to_hv_levels": epochs_to_levels(runs),
               "startup_oracle": bounds.get(STARTUP_TRIALS),
               "startup_oracle_by_startup": bounds}
        Path(args.json).write_text(json.dumps(_clean(out), indent=1) + "\n")
    if args.svg and gp_s is None:  # the plot leaves GP out (fewer trials, fewer reps)
        c = curves(runs, max_epochs=args.plot_epochs)
        Path(args.svg).write_text(curves_svg(c, y_min=args.plot_y_min) + "\n")
    if args.gp_svg and gp_s is not None:  # GP beside each sampler with and without the
        # first early-stopping setting, every method cut to GP's trials
        keep = {m for s in args.samplers for m in (s, s + "+es")} | {
            m for m in runs if m.startswith("gp")}
        c = curves(truncate({m: rs for m, rs in runs.items() if m in keep}, args.gp_trials),
                   max_epochs=args.gp_plot_epochs)
        Path(args.gp_svg).write_text(curves_svg(c, y_min=args.plot_y_min) + "\n")


def es_setting(text: str, max_epochs: int) -> HalvingConfig:
    """``"ETA,GRACE"`` or ``"ETA,GRACE,dom"`` as a :class:`HalvingConfig`."""
    parts = text.split(",")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "dom") or not all(
            p.strip().isdigit() for p in parts[:2]):
        raise SystemExit(f"--es: {text!r} is not ETA,GRACE or ETA,GRACE,dom (e.g. 3,1 3,1,dom)")
    return HalvingConfig(max_epochs=max_epochs, eta=int(parts[0]), grace_epochs=int(parts[1]),
                         stop_dominated=len(parts) == 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default="benchmarks/tabular/data/attention343.npz")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--samplers", nargs="+", default=["random", "tpe", "nsga2"])
    p.add_argument("--gp-reps", type=int, default=3)
    p.add_argument("--gp-trials", type=int, default=100)
    p.add_argument("--gp-methods", nargs="+", choices=GP_METHODS, default=list(GP_METHODS[:4]),
                   help="which GP replays: plain (Optuna's 10 startup trials), es (with the "
                        "first early-stopping setting), startup (with each --startup N), learn "
                        "(like es, the model learning from PRUNED trials: "
                        "search.learn_from_pruned), pause (like learn, as promotion-type "
                        "halving, see --pause; not by default)")
    p.add_argument("--es", nargs="+", default=["3,1"], metavar="ETA,GRACE[,dom]",
                   help="early-stopping settings to compare (eta,grace_epochs, and ',dom' for "
                        "early_stopping.stop_dominated: true); the first is named SAMPLER+es, "
                        "the others SAMPLER+es(SETTING)")
    p.add_argument("--oracle", action="store_true",
                   help="also replay each early-stopping setting with oracle ranking (the rungs "
                        "see the mean final accuracy): what the rule costs with perfect ranking")
    p.add_argument("--promote", action="store_true",
                   help="also replay each early-stopping setting with promotion of re-proposed "
                        "pruned architectures (early_stopping.promote: true in a study)")
    p.add_argument("--pause", action="store_true",
                   help="also replay each early-stopping setting without ',dom' as "
                        "promotion-type halving (trials pause at every rung and resume when in "
                        "the top 1/eta; an analysis, the runner stops instead), with --oracle "
                        "also oracle-ranked")
    p.add_argument("--learn", action="store_true",
                   help="also replay tpe with each early-stopping setting, its model learning "
                        "from PRUNED trials (search.learn_from_pruned: true)")
    p.add_argument("--startup", type=int, nargs="*", default=[], metavar="N",
                   help="also replay tpe (with and without the first early-stopping setting) "
                        "and gp (without) with N random startup trials instead of 10")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None, help="write the summary and targets here")
    p.add_argument("--svg", default=None, help="write the HV-ratio plot here")
    p.add_argument("--plot-epochs", type=float, default=None, help="epoch axis limit")
    p.add_argument("--gp-svg", default=None,
                   help="write a second plot here: the GP replays beside each sampler with and "
                        "without the first early-stopping setting, all cut to --gp-trials")
    p.add_argument("--gp-plot-epochs", type=float, default=None,
                   help="epoch axis limit of --gp-svg")
    p.add_argument("--plot-y-min", type=float, default=0.0, help="HV-ratio axis start")
    args = p.parse_args(argv)
    for flag, value, low in (("--reps", args.reps, 1), ("--trials", args.trials, 1),
                             ("--gp-reps", args.gp_reps, 0), ("--gp-trials", args.gp_trials, 0)):
        if value < low:
            p.error(f"{flag}: {value} is not an integer >= {low}")

    table = load_table(args.table)
    print(f"table: {table.summary()}")
    configs = []
    for i, text in enumerate(args.es):
        configs.append((es_setting(text, table.epochs), "" if i == 0 else f"({text})"))
    methods = [Method(s) for s in args.samplers]
    methods += [Method(s, cfg, tag) for cfg, tag in configs for s in args.samplers]
    if args.oracle:
        methods += [Method(s, cfg, tag, oracle_ranking=True) for cfg, tag in configs
                    for s in args.samplers]
    if args.promote:
        methods += [Method(s, replace(cfg, promote=True), tag) for cfg, tag in configs
                    for s in args.samplers]
    if args.pause:
        methods += [Method(s, cfg, tag, pause=True, oracle_ranking=oracle)
                    for oracle in (False, True) if args.oracle or not oracle
                    for cfg, tag in configs if not cfg.stop_dominated for s in args.samplers]
    if args.learn:
        methods += [Method(s, cfg, tag, learn_from_pruned=True) for cfg, tag in configs
                    for s in args.samplers if s == "tpe"]
    methods += [m for n in args.startup for s in args.samplers if s == "tpe"
                for m in (Method(s, startup=n), Method(s, configs[0][0], startup=n))]
    t0 = time.perf_counter()
    runs = replay(table, methods, args.trials, args.reps, workers=args.workers)
    main_s = time.perf_counter() - t0
    print(f"replay: {len(methods)} methods x {args.reps} reps x {args.trials} trials in "
          f"{main_s:.1f}s wall ({args.workers} workers)", flush=True)
    write(args, table, configs, runs, main_s, None)  # kept even if GP is interrupted
    if args.gp_reps > 0 and args.gp_trials > 0:
        t1 = time.perf_counter()
        gp_methods = [Method("gp")] if "plain" in args.gp_methods else []
        if "startup" in args.gp_methods:
            gp_methods += [Method("gp", startup=n) for n in args.startup]
        gp_methods += [Method("gp", configs[0][0], learn_from_pruned=learn)
                       for learn in (False, True) if ("learn" if learn else "es") in args.gp_methods]
        if "pause" in args.gp_methods:
            gp_methods.append(Method("gp", configs[0][0], pause=True, learn_from_pruned=True))
        gp = replay(table, gp_methods, args.gp_trials, args.gp_reps, workers=args.workers)
        gp_s = time.perf_counter() - t1
        runs.update(gp)
        print(f"gp: {len(gp_methods)} methods x {args.gp_reps} reps x {args.gp_trials} trials "
              f"in {gp_s:.1f}s", flush=True)
        write(args, table, configs, runs, main_s, gp_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
