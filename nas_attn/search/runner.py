"""The search runner: Optuna proposes, Ray Tune runs, the Optuna storage keeps the truth.

One run = one run folder + one run id. ``run_search`` creates both, opens (or continues) the
study and executes; ``resume_run`` re-executes an interrupted run from its folder alone. Each
execution ("segment") is a fresh ``Tuner``: ``Tuner.restore`` is never used, because after a
``kill -9`` it replays suggestions and retrains finished trials (DESIGN.md). Instead:

1. reconcile: this run's trials still RUNNING in the storage (their driver died) become FAIL
   ``orphaned`` and do not count;
2. count this run's finished trials; the segment asks Ray for exactly the rest;
3. seed the sampler with ``seed + len(study.trials)`` so a resumed segment does not replay the
   first segment's proposals (a fresh study uses ``seed`` itself, so runs are reproducible);
4. duplicates of evaluated architectures are reused, not retrained (see the searcher).

A SIGINT (Ctrl-C) lets Ray end the segment; trials still running are told FAIL ``orphaned``
(retrained on resume) and the run is marked ``interrupted``.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.search import fingerprint as fp
from nas_attn.search import run_dir as rd
from nas_attn.search import storage as st
from nas_attn.search.setup import SearchOptions, SearchSetup

log = logging.getLogger(__name__)
_NOISY_LOGGERS = ("ray.tune.tune", "ray.tune.execution.tune_controller",
                  "ray.tune.execution.experiment_state", "ray.tune.utils.util")


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    study_name: str
    status: str  # "finished" | "interrupted" | "stopped"
    requested: int
    finished: int
    complete: int
    pruned: int
    failed: int
    reused: int
    message: str = ""


# -- Optuna -----------------------------------------------------------------------------------


def make_sampler(name: str, seed: int, grid: Mapping[str, list[Any]] | None) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if not grid:
            raise ConfigError("--sampler", name, "this search space cannot be enumerated as a grid",
                              ["tpe", "nsga2", "gp", "random"])
        return _grid_sampler(dict(grid), seed)
    raise ConfigError("--sampler", name, "unknown sampler", ["tpe", "nsga2", "gp", "random", "grid"])


def _grid_sampler(grid: dict[str, list[Any]], seed: int) -> Any:
    import optuna

    class ExhaustiveGrid(optuna.samplers.GridSampler):
        """GridSampler without ``study.stop()`` once the grid is covered: that call is only
        legal inside ``study.optimize``; with ask/tell it raises. Proposals after the grid
        is covered repeat grid points, which the searcher reuses instead of retraining."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return ExhaustiveGrid(grid, seed=seed)


def open_study(storage: Any, setup: SearchSetup, sampler: Any) -> Any:
    """Load the study (refusing another setup's fingerprint) or create it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=setup.name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(study_name=setup.name, storage=storage, sampler=sampler,
                                        directions=setup.directions)
            study.set_user_attr(fp.ATTR, dict(setup.fingerprint))
            study.set_user_attr(fp.HASH_ATTR, fp.fingerprint_hash(setup.fingerprint))
            study.set_user_attr("objectives", [o.name for o in setup.objectives])
            return study
        except optuna.exceptions.DuplicatedStudyError:  # another driver was faster
            study = optuna.load_study(study_name=setup.name, storage=storage, sampler=sampler)
    stored = study.user_attrs.get(fp.ATTR)
    fp.check_compatible(setup.name, stored, setup.fingerprint)
    return study


def reconcile(study: Any, run_id: str) -> int:
    """Mark this run's RUNNING trials FAIL ``orphaned`` (their driver is gone); returns how many."""
    from optuna.trial import TrialState

    n = 0
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.user_attrs.get("run_id") not in (run_id, None):
            continue
        storage.set_trial_user_attr(t._trial_id, "fail_reason", "orphaned")
        storage.set_trial_user_attr(t._trial_id, "counts", False)
        storage.set_trial_user_attr(t._trial_id, "run_id", run_id)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


def counted(study: Any, run_id: str) -> int:
    from nas_attn.search.searcher import is_counted

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("run_id") == run_id and is_counted(t))


# -- Ray --------------------------------------------------------------------------------------


def start_ray(address: str | None, num_cpus: int | None, quiet: bool) -> bool:
    """Join ``address`` or start a local runtime on 127.0.0.1; True when this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only runtime of our own
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level=logging.WARNING, configure_logging=True)
    return True


def _error_relay(searcher: Any) -> Any:
    from ray.tune import Callback

    from nas_attn.search.outcome import reason_of

    class ErrorRelay(Callback):
        """Hands a failed Ray trial's exception (its fail reason) to the searcher."""

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            exc = _trial_exception(trial)
            reason, message = reason_of(exc)
            searcher.resolve_error(trial.trial_id, reason, message)

    return ErrorRelay()


def _trial_exception(trial: Any) -> BaseException | None:
    """The exception a Ray trial failed with (the local pickled copy Ray writes first)."""
    from ray import cloudpickle

    for path in (getattr(trial, "pickled_error_file", None),):
        if path and os.path.exists(path):
            try:
                with open(path, "rb") as fh:
                    return cloudpickle.load(fh)
            except Exception:
                pass
    try:
        return trial.get_pickled_error()
    except Exception:
        return None


def _max_concurrent(options: SearchOptions) -> int:
    import ray

    if options.max_concurrent:
        return options.max_concurrent
    cpus = ray.cluster_resources().get("CPU", 1)
    by_cpu = max(1, math.floor(cpus / options.cpus_per_trial))
    gpus = ray.cluster_resources().get("GPU", 0)
    if options.gpus_per_trial > 0:
        by_cpu = min(by_cpu, max(1, math.floor(gpus / options.gpus_per_trial)))
    return by_cpu


def _scheduler(setup: SearchSetup) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    es = dict(setup.early_stopping)
    if not es or not es.get("enabled", True):
        return FIFOScheduler()
    from nas_attn.search.pruning import HalvingConfig
    from nas_attn.search.ray_scheduler import ParetoHalvingScheduler

    cost = next((o for o in setup.objectives if o.name != "val_accuracy"), None)
    acc = next((o for o in setup.objectives if o.name == "val_accuracy"), None)
    if cost is None or acc is None:
        return FIFOScheduler()
    cfg = HalvingConfig.from_dict({**es, "max_epochs": setup.epochs})
    return ParetoHalvingScheduler(cfg, metric="val_accuracy", cost_metric=cost.name,
                                  time_attr="epoch", directions=(acc.direction, cost.direction))


def _execute(setup: SearchSetup, study: Any, run_dir: Path, run_id: str, target: int,
             quiet: bool, progress: Any) -> tuple[Any, bool]:
    """One Tuner over ``target`` more trials. Returns (searcher, interrupted)."""
    from ray import tune

    from nas_attn.search.searcher import AskTellSearcher
    from nas_attn.search.trainable import run_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's own console reporter, silent below
    opts = setup.options
    searcher = AskTellSearcher(study, setup.propose, setup.objectives, setup.epochs, target,
                               run_id, on_event=progress.event if progress else None)
    settings = {"evaluator": setup.evaluator, "epochs": setup.epochs,
                "cpus_per_trial": opts.cpus_per_trial,
                "evaluate": {**setup.evaluate_settings, "cpus_per_trial": opts.cpus_per_trial}}
    resources = {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)
    callbacks = [_error_relay(searcher)]
    segment = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=_scheduler(setup), num_samples=-1,
            max_concurrent_trials=_max_concurrent(opts), reuse_actors=True,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=f"segment-{segment}", storage_path=str((run_dir / "ray").resolve()),
            verbose=0, callbacks=callbacks, log_to_file=True,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    interrupted = False
    # Ray logs every failed trial's traceback and "Trials did not complete"; the runner records
    # each failure with its reason (trials table, fail_message; tracebacks stay in ray/).
    quiet_loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in quiet_loggers]
    try:
        for lg in quiet_loggers:
            lg.setLevel(logging.CRITICAL)
        if progress:
            progress.attach(searcher)
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for lg, level in zip(quiet_loggers, levels, strict=True):
            lg.setLevel(level)
    done = searcher.issued >= searcher.target or searcher.stop_reason
    if not done or searcher._pending:
        interrupted = True
        _orphan_pending(searcher)
    searcher.flush()
    return searcher, interrupted


def _orphan_pending(searcher: Any) -> None:
    from nas_attn.search.outcome import fail

    for trial_id in list(searcher._pending):
        p = searcher._pending.pop(trial_id)
        searcher._tell(p.trial, fail("orphaned", "interrupted before it finished", counts=False))
    for trials in searcher._parked.values():
        for trial, _ in trials:
            searcher._tell(trial, fail("orphaned", "interrupted before it finished",
                                       counts=False))
    searcher._parked.clear()


# -- public API -------------------------------------------------------------------------------


def run_search(setup: SearchSetup, out: Path | None = None, storage_url: str | None = None,
               address: str | None = None, quiet: bool = False, num_cpus: int | None = None,
               console: Any = None) -> RunSummary:
    """Start a new run of ``setup`` (a study of the same name in the storage is continued)."""
    run_dir = Path(out) if out else rd.default_run_dir(setup.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or st.url_from_env() or st.default_url(run_dir)
    previous = rd.read_run(run_dir) if (run_dir / rd.RUN_JSON).exists() else None
    storage = st.open_storage(url)
    sampler = make_sampler(setup.options.sampler, setup.options.seed, setup.grid)
    study = open_study(storage, setup, sampler)  # refuses a different setup before writing
    run_id = uuid.uuid4().hex[:12]
    history = []
    if previous:
        history = [*previous.get("history", []), {k: previous.get(k) for k in
                                                  ("run_id", "requested_trials", "status")}]
    info = {
        "study_name": setup.name, "run_id": run_id, "storage": st.redact(url),
        "storage_in_run_dir": storage_url is None and not st.url_from_env(),
        "requested_trials": setup.options.trials, "seed": setup.options.seed,
        "sampler": setup.options.sampler, "options": setup.options.to_dict(),
        "objectives": [[o.name, o.direction] for o in setup.objectives],
        "source": dict(setup.source), "versions": rd.versions(), "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "history": history,
        "fingerprint_hash": fp.fingerprint_hash(setup.fingerprint),
    }
    rd.write_json(run_dir / rd.RUN_JSON, info)
    rd.write_study_yaml(run_dir, setup.resolved)
    return _run(setup, study, run_dir, info, address, quiet, num_cpus, console)


def resume_run(run_dir: Path, storage_url: str | None = None, address: str | None = None,
               quiet: bool = False, num_cpus: int | None = None, console: Any = None,
               setup_factory: Callable[[Mapping[str, Any], Path], SearchSetup] | None = None
               ) -> RunSummary:
    """Finish an interrupted run (Ctrl-C, kill -9, lost machine) from its folder."""
    run_dir = Path(run_dir)
    info = rd.read_run(run_dir)
    if info.get("storage_in_run_dir"):
        url = st.default_url(run_dir)
    else:
        url = storage_url or st.url_from_env(info.get("storage"))
        if url is None or st.is_redacted(url):
            raise ConfigError("--storage", info.get("storage"),
                              "the run's storage URL had a password, which is never written to "
                              f"the run folder; pass it again with --storage or ${st.ENV_STORAGE}")
    setup = (setup_factory or _setup_from_run)(info, run_dir)
    storage = st.open_storage(url)
    sampler = make_sampler(setup.options.sampler, setup.options.seed, setup.grid)
    study = open_study(storage, setup, sampler)
    return _run(setup, study, run_dir, info, address, quiet, num_cpus, console)


def _setup_from_run(info: Mapping[str, Any], run_dir: Path) -> SearchSetup:
    from nas_attn.search.setup import setup_from_source

    options = SearchOptions(**info["options"])
    source = dict(info["source"])
    if source.get("kind") == "study":
        source["path"] = str(run_dir / rd.STUDY_YAML)
    return setup_from_source(source, options, info["study_name"])


def _run(setup: SearchSetup, study: Any, run_dir: Path, info: dict[str, Any],
         address: str | None, quiet: bool, num_cpus: int | None, console: Any) -> RunSummary:
    from nas_attn.search.progress import Progress
    from nas_attn.search.results import write_trials_table

    run_id = info["run_id"]
    orphans = reconcile(study, run_id)
    already = counted(study, run_id)
    target = max(0, int(info["requested_trials"]) - already)
    # a new sampler seed per segment: a resumed segment must not replay earlier proposals
    seed = int(info["seed"]) + len(study.trials)
    study.sampler = make_sampler(setup.options.sampler, seed, setup.grid)
    progress = Progress(study, setup, int(info["requested_trials"]), already, quiet, console,
                        orphans)
    status, message, searcher = "finished", "", None
    started = False
    try:
        if target > 0:
            started = start_ray(address, num_cpus, quiet)
            with progress:
                searcher, interrupted = _execute(setup, study, run_dir, run_id, target, quiet,
                                                 progress)
            if interrupted:
                status = "interrupted"
            elif searcher.stop_reason:
                status, message = "stopped", searcher.stop_reason
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        if started:
            import ray

            ray.shutdown()
        info = {**info, "status": status, "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        rd.write_json(run_dir / rd.RUN_JSON, info)
        write_trials_table(study, run_dir)
    return summarize(study, run_dir, setup.name, info, status, message)


def summarize(study: Any, run_dir: Path, name: str, info: Mapping[str, Any], status: str,
              message: str = "") -> RunSummary:
    from optuna.trial import TrialState

    from nas_attn.search.searcher import is_counted

    mine = [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("run_id") == info["run_id"] and is_counted(t)]
    return RunSummary(
        run_dir, name, status, int(info["requested_trials"]), len(mine),
        sum(t.state == TrialState.COMPLETE for t in mine),
        sum(t.state == TrialState.PRUNED for t in mine),
        sum(t.state == TrialState.FAIL for t in mine),
        sum(bool(t.user_attrs.get("reused")) for t in mine), message)
