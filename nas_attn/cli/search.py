"""``nas-attn search STUDY`` and ``nas-attn resume RUN_DIR``: run a search, finish a search or
an ablation.

Optuna proposes architectures, Ray Tune runs the trials (a local runtime on 127.0.0.1, or a
cluster with ``--address``), the Optuna storage keeps the truth. Exit codes: 0 finished (or
stopped by the searcher), 1 failed (run.json's ``message`` says why), 130 interrupted
(``nas-attn resume RUN_DIR`` finishes either), 2 bad input or a run folder in use by a live
driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nas_attn.cli import app, console, err_console
from nas_attn.cli._options import (
    Address,
    AllowPlugins,
    CpusPerTrial,
    GpusPerTrial,
    MaxConcurrent,
    NumCpus,
    NumGpus,
    PluginRefs,
    Quiet,
    RunOut,
    use_plugins,
)

SAMPLER_HELP = "tpe, nsga2, gp, random or grid"


def _say(text: str) -> None:
    """One plain line on stdout, never wrapped (paths stay copy-pastable)."""
    console.print(text, highlight=False, soft_wrap=True)


def _summary(s: Any, quiet: bool) -> None:
    where = s.run_dir
    if quiet:
        _say(f"{s.status} {s.finished}/{s.requested} {where}")
        if s.status == "failed" and s.message:
            _say(s.message)
        return
    _say(f"{s.status}: {s.finished}/{s.requested} trials finished "
         f"({s.complete} complete, {s.pruned} pruned, {s.failed} failed"
         + (f", {s.reused} reused" if s.reused else "")
         + (f", {s.promoted} promoted" if s.promoted else "") + ")")
    if s.message:
        _say(s.message)
    if s.front_size:
        front = f"Pareto front: {s.front_size} architecture(s)"
        if s.best_accuracy is not None:
            front += f", best accuracy {s.best_accuracy:.4f}"
        if s.hypervolume is not None:
            front += f", hypervolume {s.hypervolume:.4f} ({s.hv_reference})"
        _say(front)
    _say(f"results:   {where}  (trials.csv, study.db, run.json, study.yaml)")
    _say(f"in Python: nas_attn.load_run({str(where)!r}).front()")
    _say(f"dashboard: nas-attn dashboard {where}")
    _say(f"export:    nas-attn export {where} --pick knee")
    if s.status in ("interrupted", "failed"):
        _say(f"resume:    nas-attn resume {where}")


def _exit(s: Any) -> None:
    if s.status == "interrupted":
        # SystemExit, not typer.Exit: with standalone_mode=False click turns Exit into a
        # return value that nas_attn.cli.main does not pass on
        raise SystemExit(130)
    if s.status == "failed":
        raise SystemExit(1)


@app.command("search")
def search_cmd(
    study: Annotated[Path, typer.Argument(help="study file (YAML)")],
    trials: Annotated[int | None, typer.Option("--trials", help="finished trials wanted")] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help=SAMPLER_HELP)] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    startup_trials: Annotated[int | None, typer.Option(
        "--startup-trials", help="random trials before the tpe or gp model (default 10)")] = None,
    learn_from_pruned: Annotated[bool | None, typer.Option(
        "--learn-from-pruned/--ignore-pruned", help="whether the tpe or gp model learns from "
        "early-stopped trials (default: gp yes, tpe no)")] = None,
    address: Address = None,
    cpus_per_trial: CpusPerTrial = None,
    gpus_per_trial: GpusPerTrial = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna storage URL (default: SQLite in the run folder), "
        "e.g. postgresql://user:pw@host/db", envvar="NAS_ATTN_STORAGE")] = None,
    max_concurrent: MaxConcurrent = None,
    out: RunOut = None,
    num_cpus: NumCpus = None,
    num_gpus: NumGpus = None,
    gpu_memory_gb: Annotated[float | None, typer.Option(
        "--gpu-memory-gb", help="memory of one GPU for packing trials (default: the first "
        "CUDA device's)")] = None,
    one_shot: Annotated[bool, typer.Option(
        "--one-shot", help="search with a weight-sharing supernet, then confirm the predicted "
        "front by training it (the study's `evaluator: supernet`; docs/one-shot.md)")] = False,
    quiet: Quiet = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Search a study: Optuna proposes, Ray Tune trains, results go to a run folder."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import run_search

    overrides = {"trials": trials, "sampler": sampler, "seed": seed,
                 "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
                 "max_concurrent": max_concurrent, "startup_trials": startup_trials,
                 "learn_from_pruned": learn_from_pruned, "gpu_memory_gb": gpu_memory_gb}
    setup = setup_from_study_file(study, overrides, one_shot=one_shot)
    s = run_search(setup, out=out, storage_url=storage, address=address, quiet=quiet,
                   num_cpus=num_cpus, console=err_console, num_gpus=num_gpus)
    _summary(s, quiet)
    _exit(s)


@app.command("resume")
def resume_cmd(
    run_dir: Annotated[Path, typer.Argument(
        help="the run folder of an interrupted search or ablation")],
    address: Address = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="storage URL when the run's had a password (never stored)",
        envvar="NAS_ATTN_STORAGE")] = None,
    num_cpus: NumCpus = None,
    num_gpus: NumGpus = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="an ablation: train its failed jobs again")] = False,
    quiet: Quiet = False,
    plugin: PluginRefs = None,
    allow_plugins: AllowPlugins = False,
) -> None:
    """Finish an interrupted search or ablation (Ctrl-C, kill -9): orphans are reconciled,
    finished trials are kept, the run ends with exactly what it asked for."""
    use_plugins(plugin, allow_plugins)
    from nas_attn.ablation.config import ABLATION_JSON

    if (run_dir / ABLATION_JSON).is_file():
        from nas_attn.ablation.run import resume_ablation
        from nas_attn.cli.ablate import print_summary

        a = resume_ablation(run_dir, address=address, num_cpus=num_cpus, quiet=quiet,
                            console=err_console, retry_failed=retry_failed, num_gpus=num_gpus)
        print_summary(a, quiet)
        if a.status == "interrupted":
            raise SystemExit(130)
        return
    from nas_attn.errors import ConfigError
    from nas_attn.search.runner import resume_run

    if retry_failed:
        raise ConfigError("--retry-failed", True, "only for an ablation run folder (a search "
                          "retrains what failed in a way that may not last by itself)")
    s = resume_run(run_dir, storage_url=storage, address=address, quiet=quiet,
                   num_cpus=num_cpus, console=err_console, num_gpus=num_gpus)
    _summary(s, quiet)
    _exit(s)
