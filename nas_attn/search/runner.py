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
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import name_metrics
from nas_attn.search import execution as ex
from nas_attn.search import fingerprint as fp
from nas_attn.search import run_dir as rd
from nas_attn.search import run_lock
from nas_attn.search import storage as st
from nas_attn.search.ownership import reconcile
from nas_attn.search.samplers import learns_from_pruned, make_sampler
from nas_attn.search.setup import SearchOptions, SearchSetup

log = logging.getLogger(__name__)
_NOISY_LOGGERS = ("ray.tune.tune", "ray.tune.execution.tune_controller",
                  "ray.tune.execution.experiment_state", "ray.tune.utils.util")


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    study_name: str
    status: str  # "finished" | "interrupted" | "stopped" | "failed" (see run_dir.ended_status)
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
            name_metrics(study, setup.objectives)
            return study
        except optuna.exceptions.DuplicatedStudyError:  # another driver was faster
            study = optuna.load_study(study_name=setup.name, storage=storage, sampler=sampler)
    fp.check_compatible(setup.name, _stored_fingerprint(study, wait_s), setup.fingerprint)
    name_metrics(study, setup.objectives)
    return study


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
        """As :meth:`get`: a hash another driver finished counts as present."""
        return isinstance(spec_hash, str) and self.get(spec_hash) is not None


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


def _resources(options: SearchOptions) -> ex.TrialResources:
    return ex.TrialResources(options.cpus_per_trial, options.gpus_per_trial,
                             options.max_concurrent)


def _execute(setup: SearchSetup, study: Any, run_dir: Path, run_id: str, target: int,
             progress: Any, shared: bool = False,
             info: dict[str, Any] | None = None,
             fixed_params: Callable[[], Mapping[str, Any] | None] | None = None
             ) -> tuple[Any, bool]:
    """One Tuner over ``target`` more trials. Returns (searcher, interrupted)."""
    from nas_attn.search.gpu_packing import guard, share_of
    from nas_attn.search.searcher import AskTellSearcher
    from nas_attn.search.trainable import CHECKPOINT_DIR, STATE_DIR, run_trial

    opts = setup.options
    halving = _halving(setup)
    promote = bool(halving is not None and halving.promote)
    propose = guard(setup.propose, setup.evaluate_settings, opts.gpus_per_trial,
                    opts.gpu_memory_gb)
    searcher = AskTellSearcher(study, propose, setup.objectives, setup.epochs, target,
                               run_id, on_event=progress.event if progress else None,
                               promote=promote,
                               done_table=lambda seen: SharedDone(study, seen, shared),
                               fixed_params=fixed_params)
    keep = setup.evaluate_settings.get("keep_checkpoints", True)
    share = {"cpus_per_trial": opts.cpus_per_trial, "gpus_per_trial": opts.gpus_per_trial}
    settings = {"evaluator": setup.evaluator, "epochs": setup.epochs,
                "checkpoint_dir": str((run_dir / CHECKPOINT_DIR).resolve()) if keep else None,
                **share, "evaluate": {**setup.evaluate_settings, **share}}
    if promote:  # stopped trials keep their state at every rung (see evaluators.py)
        settings.update(state_dir=str((run_dir / STATE_DIR).resolve()),
                        save_state_at=halving.rungs())
    if progress:
        progress.attach(searcher)

    def record(resources: dict[str, Any]) -> None:
        if info is not None:
            info["resources"] = resources
            rd.write_json(run_dir / rd.RUN_JSON, info)

    resources = _resources(opts)
    if propose is not setup.propose:  # memory-guarded: each trial asks for its share
        resources = replace(resources, gpu_share=share_of(opts.gpus_per_trial))
    interrupted = ex.run_segment(run_trial, settings, searcher, run_dir, resources,
                                 _scheduler(setup, halving), on_resources=record)
    return searcher, interrupted


# -- public API -------------------------------------------------------------------------------


def run_search(setup: SearchSetup, out: Path | None = None, storage_url: str | None = None,
               address: str | None = None, quiet: bool = False, num_cpus: int | None = None,
               console: Any = None, num_gpus: float | None = None) -> RunSummary:
    """Start a new run of ``setup`` (a study of the same name in the storage is continued).
    ``num_cpus``/``num_gpus``: the resources of a local runtime (default: what the machine has;
    logical GPUs need no device)."""
    ex.preflight(_resources(setup.options), address, num_cpus, num_gpus)  # before any write
    run_dir = Path(out) if out else rd.default_run_dir(setup.name)
    url = storage_url or st.url_from_env() or st.default_url(run_dir)
    if url == st.default_url(run_dir):  # the storage lives in the run folder
        run_dir.mkdir(parents=True, exist_ok=True)
    storage = st.open_storage(url)  # a storage that cannot be opened leaves no run folder
    sampler = _sampler(setup, setup.options.seed)
    study = open_study(storage, setup, sampler)  # refuses a different setup before writing
    with run_lock.hold(run_dir):  # one live driver per run folder
        previous = rd.read_run(run_dir) if (run_dir / rd.RUN_JSON).exists() else None
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
        return _run(setup, study, run_dir, info, address, quiet, num_cpus, console, num_gpus)


def resume_run(run_dir: Path, storage_url: str | None = None, address: str | None = None,
               quiet: bool = False, num_cpus: int | None = None, console: Any = None,
               setup_factory: Callable[[Mapping[str, Any], Path], SearchSetup] | None = None,
               num_gpus: float | None = None) -> RunSummary:
    """Finish an interrupted run (Ctrl-C, kill -9, lost machine) from its folder."""
    run_dir = Path(run_dir)
    rd.read_run(run_dir)  # a clear error for a folder that is no run
    with run_lock.hold(run_dir):  # refused while the run's own driver is alive
        info = rd.read_run(run_dir)
        if info.get("storage_in_run_dir"):
            url = st.default_url(run_dir)
        else:
            url = storage_url or st.url_from_env(info.get("storage"))
            if url is None or st.is_redacted(url):
                raise ConfigError("--storage", info.get("storage"),
                                  "the run's storage URL had a password, which is never written "
                                  f"to the run folder; pass it again with --storage or "
                                  f"${st.ENV_STORAGE}")
        setup = (setup_factory or _setup_from_run)(info, run_dir)
        ex.preflight(_resources(setup.options), address, num_cpus, num_gpus)
        storage = st.open_storage(url)
        sampler = _sampler(setup, setup.options.seed)
        study = open_study(storage, setup, sampler)
        return _run(setup, study, run_dir, info, address, quiet, num_cpus, console, num_gpus)


def _setup_from_run(info: Mapping[str, Any], run_dir: Path) -> SearchSetup:
    from nas_attn.search.from_study import setup_from_source

    options = SearchOptions(**info["options"])
    source = dict(info["source"])
    if source.get("kind") == "study":
        source["path"] = str(run_dir / rd.STUDY_YAML)
    return setup_from_source(source, options, info["study_name"])


def _run(setup: SearchSetup, study: Any, run_dir: Path, info: dict[str, Any],
         address: str | None, quiet: bool, num_cpus: int | None, console: Any,
         num_gpus: float | None = None) -> RunSummary:
    from nas_attn.search.progress import Progress
    from nas_attn.search.results import write_trials_table

    run_id = info["run_id"]
    shared = not info.get("storage_in_run_dir", False)
    progress = None
    interrupted, stop_reason, error = False, None, None
    runtime = contextlib.ExitStack()  # a Ray runtime the one-shot phases started, if any
    try:
        fixed_params = None
        if setup.oneshot is not None:  # train the supernet, search against it, then confirm
            from nas_attn.search.oneshot_run import OneShotContext, prepare_confirmation

            ctx = OneShotContext(run_dir, info, address, num_cpus, num_gpus, quiet, console,
                                 lambda n: _sampler(setup, segment_seed(
                                     int(info["seed"]), n, run_id, shared)),
                                 lambda: runtime.enter_context(
                                     ex.ray_runtime(address, num_cpus, num_gpus)))
            setup, fixed_params = prepare_confirmation(setup, study, ctx)  # sets K in info
        orphans = reconcile(study, run_id)
        already = counted(study, run_id)
        target = max(0, int(info["requested_trials"]) - already)
        # a new sampler seed per segment: a resumed segment must not replay earlier proposals
        seed = segment_seed(int(info["seed"]), len(study.trials), run_id, shared)
        study.sampler = _sampler(setup, seed)
        progress = Progress(study, setup, int(info["requested_trials"]), already, quiet,
                            console, orphans)
        if target > 0:
            with ex.ray_runtime(address, num_cpus, num_gpus), progress:
                searcher, interrupted = _execute(setup, study, run_dir, run_id, target,
                                                 progress, shared, info, fixed_params)
            stop_reason = searcher.stop_reason
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM (Ray's handler: SystemExit)
        interrupted = True
    except BaseException as e:  # recorded as failed, then raised on
        error = e
        raise
    finally:
        runtime.close()
        done = counted(study, run_id) if error is None else 0
        status, message = rd.ended_status(int(info["requested_trials"]), done, interrupted,
                                          stop_reason, error)
        info = rd.write_ended(run_dir / rd.RUN_JSON, info, status, message)
        write_trials_table(study, run_dir)
    return summarize(study, run_dir, setup.name, info, status, message, progress)


def summarize(study: Any, run_dir: Path, name: str, info: Mapping[str, Any], status: str,
              message: str = "", progress: Any = None) -> RunSummary:
    from optuna.trial import TrialState

    from nas_attn.objectives import entries_of_trials, study_reference, summarize_front
    from nas_attn.search.searcher import is_counted

    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.user_attrs.get("run_id") == info["run_id"] and is_counted(t)]
    size, hv, best, ref = 0, None, None, ""
    if progress is not None:  # the run's front and hypervolume (nas_attn.objectives)
        if progress.reference is None:
            progress.reference = study_reference(study, progress.objectives, progress.limits)
        front = summarize_front(entries_of_trials(trials), progress.objectives,
                                progress.reference)
        size, hv = len(front.numbers), front.hypervolume if front.numbers else None
        accs = [t.values[progress.acc_index] for t in trials if t.state == TrialState.COMPLETE
                and not t.user_attrs.get("reused") and progress.acc_index is not None]
        best = max(accs) if accs else None
        ref = progress.reference_text()
    return RunSummary(
        run_dir, name, status, int(info["requested_trials"]), len(mine),
        sum(t.state == TrialState.COMPLETE for t in mine),
        sum(t.state == TrialState.PRUNED for t in mine),
        sum(t.state == TrialState.FAIL for t in mine),
        sum(bool(t.user_attrs.get("reused")) for t in mine), message, size, best, hv, ref,
        sum("promoted_from" in t.user_attrs for t in mine))
