"""Regenerate the tabular benchmark through the nas-attn search runner (Ray Tune).

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/tabular/generate_table.py \
        --out benchmarks/tabular/data/attention343.npz --run-dir runs/tabular-gen

``--space`` names one of the shipped tables' spaces (``attnbench.generate.TABLE_SPACES``:
``attention343``, the default, or ``rfa256``). Every (architecture, seed) pair of the space is
one runner
trial (``run_search``: Ray Tune trials on reused workers, Optuna SQLite storage in the run
folder). An interrupted generation continues with ``--resume`` (finished pairs are skipped).
``--limit N`` trains only the first N architectures; with ``--epochs`` and ``--train-size``
(which override the settings of :mod:`attnbench.generate`) that makes a smoke test. The
generation time and machine are written into the table's metadata.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# Ray's workers import the evaluator (attnbench.generate:evaluate) from this folder: the local
# runtime's workers inherit the variable
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)

from attnbench import generate as gen
from attnbench.table import Table, save_table


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": model or platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_start": load}


def settings_of(args: argparse.Namespace) -> dict:
    """The data and training settings of the table, with the command line's overrides."""
    data, train = dict(gen.TABLE_DATA), dict(gen.TABLE_TRAIN)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.train_size is not None:
        data["train_size"] = args.train_size
    return {"data": data, "train": train}


def build_setup(args: argparse.Namespace, settings: dict, specs: list, hashes: list,
                costs: list, skip: set[str]):
    space = gen.TABLE_SPACES[args.space]
    from nas_attn import __version__
    from nas_attn.search.outcome import Objective
    from nas_attn.search.setup import SearchOptions, SearchSetup

    proposer = gen.TableProposer(specs, hashes, costs, args.seeds, skip=skip)
    fingerprint = {"tabular": {"space": space, "archs": len(specs),
                               "seeds": list(args.seeds), **settings},
                   "version": __version__}
    epochs = int(settings["train"]["epochs"])
    return SearchSetup(
        name="tabular-attention", epochs=epochs, propose=proposer,
        objectives=(Objective("val_accuracy", "maximize"), Objective("flops", "minimize")),
        evaluator=gen.EVALUATOR, evaluate_settings=settings, fingerprint=fingerprint,
        source={"kind": "tabular", "archs": len(specs), "seeds": list(args.seeds)},
        options=SearchOptions(trials=max(1, len(proposer.pairs)), sampler="random", seed=0,
                              cpus_per_trial=1.0),
        resolved={"name": "tabular-attention", **settings, "space": space})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="attention343", choices=sorted(gen.TABLE_SPACES),
                   help="which shipped table's space")
    p.add_argument("--out", default=None,
                   help="default: benchmarks/tabular/data/<space>.npz")
    p.add_argument("--run-dir", default="runs/tabular-gen")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--limit", type=int, default=None, help="only the first N architectures")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    p.add_argument("--train-size", type=int, default=None, help="override the training images")
    p.add_argument("--resume", action="store_true", help="continue --run-dir")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from nas_attn.arch import spec_hash
    from nas_attn.cost import profile
    from nas_attn.search import runner, storage

    t_start = time.time()
    info = machine()
    space_def = gen.TABLE_SPACES[args.space]
    args.out = args.out or f"benchmarks/tabular/data/{args.space}.npz"
    archs = gen.enumerate_archs(gen.table_space(space_def))[: args.limit]
    size = tuple(space_def["input_size"])
    specs, hashes, costs, params_list = [], [], [], []
    for params, spec in archs:
        prof = profile(spec, input_size=size)
        specs.append(spec.to_dict())
        hashes.append(spec_hash(spec))
        costs.append({"flops": float(prof.flops), "params": float(prof.params)})
        params_list.append(params)
    print(f"{len(specs)} architectures x {len(args.seeds)} seeds; profiled in "
          f"{time.time() - t_start:.1f}s", flush=True)

    run_dir = Path(args.run_dir)
    skip: set[str] = set()
    if args.resume:
        import optuna

        study = optuna.load_study(study_name="tabular-attention",
                                  storage=storage.default_url(run_dir))
        skip = {t.user_attrs["spec_hash"] for t in study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE" and "spec_hash" in t.user_attrs}
    settings = settings_of(args)
    setup = build_setup(args, settings, specs, hashes, costs, skip)
    t_run = time.time()
    if not setup.propose.pairs:
        print("every (architecture, seed) pair is trained already", flush=True)
    else:
        if args.resume:
            summary = runner.resume_run(run_dir, quiet=True, num_cpus=args.num_cpus,
                                        setup_factory=lambda _info, _dir: setup)
        else:
            summary = runner.run_search(setup, out=run_dir, quiet=True,
                                        num_cpus=args.num_cpus)
        print(f"runner: {summary.status}, {summary.complete} complete, {summary.failed} "
              f"failed, {time.time() - t_run:.0f}s", flush=True)
    run_s = time.time() - t_run

    import optuna

    study = optuna.load_study(study_name="tabular-attention", storage=storage.default_url(run_dir))
    epochs = int(settings["train"]["epochs"])
    acc, secs = gen.collect(study, len(specs), args.seeds, epochs)
    missing = int(np.isnan(acc[:, :, -1]).sum())
    if missing:
        print(f"{missing} (arch, seed) pairs have no curve; rerun with --resume", flush=True)
        return 1
    info["generation_seconds"] = round(time.time() - t_start, 1)  # this invocation only
    info["runner_seconds"] = round(run_s, 1)
    done = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    # first trial start to last trial end over every invocation (a resumed generation's pause
    # included): what the table cost, where generation_seconds is only the last resume
    info["trials_span_seconds"] = round((max(t.datetime_complete for t in done) - min(
        t.datetime_start for t in done)).total_seconds(), 1)
    info["train_seconds_sum"] = round(float(np.nansum(secs)), 1)
    meta = {
        "name": space_def["name"], "space": space_def, "data": settings["data"],
        "train": settings["train"], "input_size": list(size), "generation": info,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": "python benchmarks/tabular/generate_table.py " + " ".join(sys.argv[1:]),
        "versions": runner.rd.versions(),
    }
    table = Table(acc=acc, flops=[c["flops"] for c in costs],
                  params=[int(c["params"]) for c in costs], arch_params=tuple(params_list),
                  seeds=args.seeds, spec_hash=tuple(hashes), seconds=secs, meta=meta)
    path = save_table(table, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {table.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
