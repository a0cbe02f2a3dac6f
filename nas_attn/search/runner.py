"""The search runner: Optuna proposes, Ray Tune runs, the Optuna storage keeps the truth.

One run = one run folder + one run id. ``run_search`` creates both, opens (or continues) the
study and executes; ``resume_run`` re-executes an interrupted run from its folder alone. Each
execution ("segment") is a fresh ``Tuner``: ``Tuner.restore`` is never used, because after a
``kill -9`` it replays suggestions and retrains finished trials (measured with ray 2.60; docs/search.md). Instead:

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

import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.search import fingerprint as fp
from nas_attn.search import run_dir as rd
from nas_attn.search import storage as st
from nas_attn.search.samplers import learns_from_pruned, make_sampler
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
    front_size: int = 0  # Pareto front of the study's COMPLETE trials
    best_accuracy: float | None = None
    hypervolume: float | None = None
    hv_reference: str = ""  # e.g. "val_accuracy 0, flops 4.1e+07"
    promoted: int = 0  # trials that resumed a stopped architecture (early_stopping.promote)


# -- Optuna -----------------------------------------------------------------------------------


FINGERPRINT_WAIT_S = 10.0  # how long a study without a fingerprint may still be in creation


def _stored_fingerprint(study: Any, wait_s: float) -> Any:
    """The study's fingerprint, waiting up to ``wait_s`` while the study is empty and has none.

    Optuna cannot create a study and set its user attrs in one transaction, so a driver that
    loads a study another driver has just created may see it before its fingerprint. An empty
    study without one is given ``wait_s`` to receive it; a study with trials is not waited on.
    """
    deadline = time.monotonic() + wait_s
    while True:
        stored = study.user_attrs.get(fp.ATTR)
        if stored is not None or time.monotonic() >= deadline:
            return stored
        if study.get_trials(deepcopy=False):
            return None
        time.sleep(0.2)


def _sampler(setup: SearchSetup, seed: int) -> Any:
    o = setup.options
    return make_sampler(o.sampler, seed, setup.grid, startup_trials=o.startup_trials,
                        learn_from_pruned=learns_from_pruned(o.sampler, o.learn_from_pruned))


def open_study(storage: Any, setup: SearchSetup, sampler: Any,
               wait_s: float = FINGERPRINT_WAIT_S) -> Any:
    """Load the study (refusing another setup's fingerprint) or create it.

    The fingerprint is set first, right after creation; a concurrent driver that loads the
    study in between waits for it (``_stored_fingerprint``) instead of refusing the study.
    """
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
    fp.check_compatible(setup.name, _stored_fingerprint(study, wait_s), setup.fingerprint)
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


class SharedDone:
    """The searcher's "already evaluated" table (spec hash -> trial to reuse), kept in step with
    a storage other drivers may write to.

    A hash this driver has not seen is looked up again in the storage (one read of the finished
    trials), so a spec another driver already evaluated is reused rather than retrained. What
    stays possible: two drivers that propose the same spec while neither has finished it both
    train it (there is no lock across drivers); each is recorded as its own trial. For a
    storage in the run folder (one driver) the table is local only.
    """

    def __init__(self, study: Any, seen: dict[str, Any], shared: bool) -> None:
        self.study = study
        self.seen = seen
        self.shared = shared

    def get(self, spec_hash: str, default: Any = None) -> Any:
        if spec_hash in self.seen or not self.shared:
            return self.seen.get(spec_hash, default)
        from optuna.trial import TrialState

        from nas_attn.search.searcher import remember, reusable

        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for t in self.study.get_trials(deepcopy=False, states=done):
            if reusable(t) and not t.user_attrs.get("reused"):
                remember(self.seen, t.user_attrs["spec_hash"], t)
        return self.seen.get(spec_hash, default)

    def __setitem__(self, spec_hash: str, trial: Any) -> None:
        self.seen[spec_hash] = trial

    def __contains__(self, spec_hash: object) -> bool:
        return spec_hash in self.seen


def segment_seed(seed: int, n_trials: int, run_id: str, shared: bool) -> int:
    """The sampler seed of one run segment (pure).

    ``seed + n_trials``: a fresh study uses ``seed`` (reproducible) and a resumed segment does
    not replay earlier proposals. In a storage shared by several drivers the run id is mixed in
    too: drivers started together see the same ``n_trials`` and would otherwise propose the
    same sequence.
    """
    base = seed + n_trials
    if not shared:
        return base
    return (base + int(run_id[:8], 16)) % (2**31 - 1)


def counted(study: Any, run_id: str) -> int:
    from nas_attn.search.searcher import is_counted

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("run_id") == run_id and is_counted(t))


# -- Ray --------------------------------------------------------------------------------------


def start_ray(address: str | None, num_cpus: int | None, quiet: bool) -> bool:
    """Join ``address`` or start a local runtime on 127.0.0.1; True when this call started Ray.

    Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address (it assumes
    other nodes may join) and then listens on every interface. Its switch for one-machine
    runtimes (``ray_constants.ENABLE_RAY_CLUSTER``, read when ``ray.init`` resolves the node
    address) makes it keep 127.0.0.1: the GCS, the raylet and the workers then listen on
    loopback only. It is set for the ``ray.init`` call and restored after it.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only runtime of our own
    # Ray Tune runs every trial in a new thread of a reused worker; with glibc's default of up
    # to 8 malloc arenas per core each new thread may get a fresh arena, and freed training
    # memory then stays mapped: a worker grew from ~0.75 to ~1.5 GiB over 12 quickstart
    # trials. Two arenas keep it flat (measured: ~0.75 GiB after 12 trials). Inherited by the
    # raylet and its workers; a value the user set is kept.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    with _loopback_only():
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    return True


@contextlib.contextmanager
def ray_runtime(address: str | None, num_cpus: int | None, quiet: bool) -> Iterator[None]:
    """:func:`start_ray` for the block; shuts Ray down afterwards if this call started it."""
    started = start_ray(address, num_cpus, quiet)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    try:
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # Ray's default binding applies
        yield
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


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


def _node_recorder(searcher: Any) -> Any:
    from ray.tune import Callback

    class NodeRecorder(Callback):
        """Records on which Ray node (id and IP) each trial ran: user attrs ``node_id`` and
        ``node_ip``, read from the GCS actor table at the trial's first result (driver side,
        no extra work in the worker)."""

        def __init__(self) -> None:
            self.seen: set[str] = set()

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if trial.trial_id in self.seen:
                return
            self.seen.add(trial.trial_id)
            pending = searcher._pending.get(trial.trial_id)
            where = _actor_node(trial)
            if pending is None or where is None:
                return
            try:
                pending.trial.set_user_attr("node_id", where[0])
                pending.trial.set_user_attr("node_ip", where[1])
            except Exception:  # bookkeeping only: never abort the search for it
                log.debug("could not record the node of trial %s", trial.trial_id)

    return NodeRecorder()


def _actor_node(trial: Any) -> tuple[str, str] | None:
    """(node id, node IP) of the actor running a Ray Tune trial, or None when unknown."""
    try:
        from ray._private import state

        actor = trial.temporary_state.ray_actor
        info = state.actors(actor._actor_id.hex())
        address = info.get("Address") or {}
        return str(address["NodeID"]), str(address.get("IPAddress", ""))
    except Exception:
        return None


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


def _halving(setup: SearchSetup) -> Any:
    """The early-stopping rule of ``setup``, or None when there is none (disabled, or no
    accuracy and cost objective to rank by)."""
    es = dict(setup.early_stopping)
    names = {o.name for o in setup.objectives}
    if not es or not es.get("enabled", True) or "val_accuracy" not in names or len(names) < 2:
        return None
    from nas_attn.search.pruning import HalvingConfig

    return HalvingConfig.from_dict({**es, "max_epochs": setup.epochs})


def _scheduler(setup: SearchSetup, cfg: Any) -> Any:
    """Pareto halving with ``cfg`` (``_halving(setup)``), or FIFO when that is None."""
    from ray.tune.schedulers import FIFOScheduler

    if cfg is None:
        return FIFOScheduler()
    from nas_attn.search.ray_scheduler import ParetoHalvingScheduler

    cost = next(o for o in setup.objectives if o.name != "val_accuracy")
    acc = next(o for o in setup.objectives if o.name == "val_accuracy")
    return ParetoHalvingScheduler(cfg, metric="val_accuracy", cost_metric=cost.name,
                                  time_attr="epoch", directions=(acc.direction, cost.direction))


def make_tuner(trainable: Any, searcher: Any, run_dir: Path, max_concurrent: int,
               callbacks: list[Any], scheduler: Any = None) -> Any:
    """The Tuner of one run segment, shared by the search and the ablation runner: reused
    actors, trials under ``run_dir/ray/segment-<time>-<id>/trial_<id>``, no retries (a failure
    is recorded with its reason, not retried), one checkpoint kept."""
    from ray import tune

    segment = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=-1,
            max_concurrent_trials=max_concurrent, reuse_actors=True,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=f"segment-{segment}", storage_path=str((run_dir / "ray").resolve()),
            verbose=0, callbacks=callbacks, log_to_file=True,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def fit_quietly(tuner: Any) -> bool:
    """``tuner.fit()`` with Ray's per-failure tracebacks and "Trials did not complete" silenced
    (the runners record each failure with its reason; tracebacks stay in ray/). True when
    interrupted by Ctrl-C."""
    quiet_loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in quiet_loggers]
    try:
        for lg in quiet_loggers:
            lg.setLevel(logging.CRITICAL)
        tuner.fit()
    except KeyboardInterrupt:
        return True
    finally:
        for lg, level in zip(quiet_loggers, levels, strict=True):
            lg.setLevel(level)
    return False


def _execute(setup: SearchSetup, study: Any, run_dir: Path, run_id: str, target: int,
             quiet: bool, progress: Any, shared: bool = False) -> tuple[Any, bool]:
    """One Tuner over ``target`` more trials. Returns (searcher, interrupted)."""
    from ray import tune

    from nas_attn.search.searcher import AskTellSearcher
    from nas_attn.search.trainable import CHECKPOINT_DIR, STATE_DIR, run_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's own console reporter, silent below
    opts = setup.options
    halving = _halving(setup)
    promote = bool(halving is not None and halving.promote)
    searcher = AskTellSearcher(study, setup.propose, setup.objectives, setup.epochs, target,
                               run_id, on_event=progress.event if progress else None,
                               promote=promote)
    keep = setup.evaluate_settings.get("keep_checkpoints", True)
    settings = {"evaluator": setup.evaluator, "epochs": setup.epochs,
                "checkpoint_dir": str((run_dir / CHECKPOINT_DIR).resolve()) if keep else None,
                "cpus_per_trial": opts.cpus_per_trial,
                "evaluate": {**setup.evaluate_settings, "cpus_per_trial": opts.cpus_per_trial}}
    if promote:  # stopped trials keep their state at every rung (see evaluators.py)
        settings.update(state_dir=str((run_dir / STATE_DIR).resolve()),
                        save_state_at=halving.rungs())
    resources = {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)
    if not isinstance(searcher._done, SharedDone):
        searcher._done = SharedDone(study, searcher._done, shared)
    callbacks = [_error_relay(searcher), _node_recorder(searcher)]
    tuner = make_tuner(trainable, searcher, run_dir, _max_concurrent(opts), callbacks,
                       _scheduler(setup, halving))
    if progress:
        progress.attach(searcher)
    interrupted = fit_quietly(tuner)
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
    sampler = _sampler(setup, setup.options.seed)
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
    sampler = _sampler(setup, setup.options.seed)
    study = open_study(storage, setup, sampler)
    return _run(setup, study, run_dir, info, address, quiet, num_cpus, console)


def _setup_from_run(info: Mapping[str, Any], run_dir: Path) -> SearchSetup:
    from nas_attn.search.from_study import setup_from_source

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
    shared = not info.get("storage_in_run_dir", False)
    seed = segment_seed(int(info["seed"]), len(study.trials), run_id, shared)
    study.sampler = _sampler(setup, seed)
    progress = Progress(study, setup, int(info["requested_trials"]), already, quiet, console,
                        orphans)
    status, message, searcher = "finished", "", None
    try:
        if target > 0:
            with ray_runtime(address, num_cpus, quiet), progress:
                searcher, interrupted = _execute(setup, study, run_dir, run_id, target, quiet,
                                                 progress, shared)
            if interrupted:
                status = "interrupted"
            elif searcher.stop_reason:
                status, message = "stopped", searcher.stop_reason
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        info = rd.write_ended(run_dir / rd.RUN_JSON, info, status)
        write_trials_table(study, run_dir)
    return summarize(study, run_dir, setup.name, info, status, message, progress)


def summarize(study: Any, run_dir: Path, name: str, info: Mapping[str, Any], status: str,
              message: str = "", progress: Any = None) -> RunSummary:
    from optuna.trial import TrialState

    from nas_attn.search.progress import front_stats, reference_point
    from nas_attn.search.searcher import is_counted

    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.user_attrs.get("run_id") == info["run_id"] and is_counted(t)]
    size, hv, best, ref = 0, None, None, ""
    if progress is not None:
        points = [tuple(t.values) for t in trials
                  if t.state == TrialState.COMPLETE and not t.user_attrs.get("reused")]
        if progress.reference is None:
            progress.reference = reference_point(progress.names, progress.directions,
                                                 progress.limits, points)
        if points and progress.reference is not None:
            size, hv = front_stats(points, progress.directions, progress.reference)
        if points and progress.acc_index is not None:
            best = max(p[progress.acc_index] for p in points)
        ref = progress.reference_text()
    return RunSummary(
        run_dir, name, status, int(info["requested_trials"]), len(mine),
        sum(t.state == TrialState.COMPLETE for t in mine),
        sum(t.state == TrialState.PRUNED for t in mine),
        sum(t.state == TrialState.FAIL for t in mine),
        sum(bool(t.user_attrs.get("reused")) for t in mine), message, size, best, hv, ref,
        sum("promoted_from" in t.user_attrs for t in mine))
