"""The one Ray execution layer of nas-attn, shared by the search and the ablation runner.

- :func:`ray_runtime`: join a cluster, or start (and afterwards stop) a local runtime on
  127.0.0.1 with the CPUs and GPUs asked for (``num_gpus`` declares *logical* GPUs: Ray packs
  trials on them whether or not a device is there, which is how CI tests the packing); the
  plugins the driver loaded travel in its runtime environment (``py_modules``) to every
  worker of every node, and :func:`run_segment` tells the workers to load them;
- :class:`TrialResources` and :func:`max_concurrent`: what one trial asks for, how many run
  at once (from the cluster's CPUs and GPUs), and the refusal of a trial that asks for more
  than the cluster has (:func:`check_resources`, both numbers in the message);
- :func:`run_segment`: one Tuner segment (reused actors, no retries, one checkpoint kept)
  with the callbacks every runner needs: the error relay (a failed trial's reason to the
  searcher) and the placement recorder (node and ``CUDA_VISIBLE_DEVICES`` of each trial).

The searchers it drives derive from :class:`nas_attn.search.bookkeeping.TrialBookkeeping`; this
module only calls that class's public methods.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.search.trainable import PLACEMENT_KEY  # reported by every trial, recorded

log = logging.getLogger(__name__)
_NOISY_LOGGERS = ("ray.tune.tune", "ray.tune.execution.tune_controller",
                  "ray.tune.execution.experiment_state", "ray.tune.utils.util")
_EPS = 1e-9


# -- the runtime ------------------------------------------------------------------------------


def local_gpus() -> int:
    """CUDA devices this process sees (0 without torch or CUDA): a local runtime's default."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start_ray(address: str | None, num_cpus: int | None, num_gpus: float | None = None
              ) -> bool:
    """Join ``address`` or start a local runtime on 127.0.0.1; True when this call started Ray.

    A local runtime gets ``num_cpus`` (default: all) and ``num_gpus`` logical GPUs (default:
    the CUDA devices torch sees). Ray turns ``_node_ip_address="127.0.0.1"`` into the
    machine's routable address (it assumes other nodes may join) and then listens on every
    interface. Its switch for one-machine runtimes (``ray_constants.ENABLE_RAY_CLUSTER``, read
    when ``ray.init`` resolves the node address) makes it keep 127.0.0.1: the GCS, the raylet
    and the workers then listen on loopback only. It is set for the ``ray.init`` call and
    restored after it.
    """
    import ray

    if ray.is_initialized():
        return False
    env = plugin_runtime_env()
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env=env)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only runtime of our own
    # Ray Tune runs every trial in a new thread of a reused worker; with glibc's default of up
    # to 8 malloc arenas per core each new thread may get a fresh arena, and freed training
    # memory then stays mapped: a worker grew from ~0.75 to ~1.5 GiB over 12 quickstart
    # trials. Two arenas keep it flat (measured: ~0.75 GiB after 12 trials). Inherited by the
    # raylet and its workers; a value the user set is kept.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    with _loopback_only():
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1,
                 num_gpus=local_gpus() if num_gpus is None else num_gpus,
                 include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True, runtime_env=env)
    return True


def plugin_runtime_env() -> dict[str, Any] | None:
    """Ray's runtime environment that brings every plugin the driver loaded to every worker on
    every node (``py_modules``: each plugin's file or package folder, uploaded by Ray; no
    shared file system assumed), or None without plugins."""
    from nas_attn.plugins import loaded_plugins, ray_py_modules

    modules = ray_py_modules(loaded_plugins())
    return {"py_modules": modules} if modules else None


def shipped_plugins() -> list[dict[str, Any]]:
    """The plugins a worker loads before its first trial (consent was decided on the driver)."""
    from nas_attn.plugins import loaded_plugins

    return [p.to_json() for p in loaded_plugins()]


@contextlib.contextmanager
def ray_runtime(address: str | None, num_cpus: int | None, num_gpus: float | None = None
                ) -> Iterator[None]:
    """:func:`start_ray` for the block; shuts Ray down afterwards if this call started it."""
    started = start_ray(address, num_cpus, num_gpus)
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


# -- resources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for, and the user's cap on trials at once (None: from resources).

    ``gpu_share`` (optional) turns a trial's config into its GPU share (a trial whose estimated
    peak memory does not fit beside ``1 / gpus`` neighbours takes a larger share, so fewer run
    beside it; see :func:`nas_attn.cost.memory.gpu_share`).
    """

    cpus: float = 1.0
    gpus: float = 0.0
    limit: int | None = None
    gpu_share: Callable[[Mapping[str, Any]], float] | None = None

    def field(self, name: str) -> str:
        return {"cpus": "search.cpus_per_trial", "gpus": "search.gpus_per_trial"}[name]

    def request(self) -> Any:
        """The ``tune.with_resources`` argument: a dict, or a function of the trial config."""
        if self.gpu_share is None or self.gpus <= 0:
            return {"cpu": self.cpus, "gpu": self.gpus}
        share = self.gpu_share
        cpus = self.cpus
        return lambda config: _pgf({"CPU": cpus, "GPU": share(config)})

    def to_dict(self, cluster: Mapping[str, float] | None = None) -> dict[str, Any]:
        """run.json's ``resources``: per trial, at once, and the cluster they ran on."""
        out: dict[str, Any] = {"cpus_per_trial": self.cpus, "gpus_per_trial": self.gpus,
                               "max_concurrent": self.limit}
        if cluster is not None:
            out["max_concurrent"] = max_concurrent(self, cluster)
            out["cluster"] = {"CPU": float(cluster.get("CPU", 0)),
                              "GPU": float(cluster.get("GPU", 0))}
            if self.gpus > 0:
                out["trials_per_gpu"] = trials_per_gpu(self.gpus)
        return out


def _pgf(bundle: Mapping[str, float]) -> Any:
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory([dict(bundle)])


def trials_per_gpu(gpus_per_trial: float) -> int:
    """How many trials of a fractional share fit on one GPU (pure): 0.25 -> 4, >= 1 -> 1."""
    if gpus_per_trial <= 0:
        raise ValueError("gpus_per_trial must be > 0")
    return max(1, math.floor(1 / gpus_per_trial + _EPS))


def max_concurrent(resources: TrialResources, cluster: Mapping[str, float]) -> int:
    """Trials at once (pure): the user's limit, else as many as the cluster's CPUs and (for GPU
    trials) GPUs hold; fractional GPU shares pack ``trials_per_gpu`` to a GPU."""
    if resources.limit:
        return resources.limit
    by_cpu = max(1, math.floor(float(cluster.get("CPU", 1)) / resources.cpus + _EPS))
    if resources.gpus <= 0:
        return by_cpu
    gpus = float(cluster.get("GPU", 0))
    if resources.gpus < 1:
        by_gpu = math.floor(gpus + _EPS) * trials_per_gpu(resources.gpus)
    else:
        by_gpu = math.floor(gpus / resources.gpus + _EPS)
    return max(1, min(by_cpu, by_gpu))


def check_resources(resources: TrialResources, cluster: Mapping[str, float],
                    where: str = "the cluster") -> None:
    """Refuse a trial that asks for more CPU or GPU than ``cluster`` has (Ray would wait for
    ever), naming both numbers (pure)."""
    for name, key in (("cpus", "CPU"), ("gpus", "GPU")):
        asked = float(getattr(resources, name))
        has = float(cluster.get(key, 0))
        if asked > has + _EPS:
            hint = " (declare logical GPUs of a local runtime with --num-gpus)" if key == "GPU" \
                else ""
            raise ConfigError(resources.field(name), asked,
                              f"a trial asks for {asked:g} {key} but {where} has {has:g}{hint}")


def local_cluster(num_cpus: int | None, num_gpus: float | None) -> dict[str, float]:
    """The resources a local runtime of :func:`start_ray` will have (before starting it)."""
    return {"CPU": float(num_cpus or os.cpu_count() or 1),
            "GPU": float(local_gpus() if num_gpus is None else num_gpus)}


def preflight(resources: TrialResources, address: str | None, num_cpus: int | None,
              num_gpus: float | None) -> None:
    """Before anything is written: refuse what a local runtime could never run. (A cluster's
    resources are known only once joined; :func:`run_segment` checks them there.)"""
    if address is None:
        import ray

        if not ray.is_initialized():
            check_resources(resources, local_cluster(num_cpus, num_gpus), "the local runtime")


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}


# -- callbacks --------------------------------------------------------------------------------


def error_relay(searcher: Any) -> Any:
    from ray.tune import Callback

    from nas_attn.search.outcome import reason_of

    class ErrorRelay(Callback):
        """Hands a failed Ray trial's exception (its fail reason) to the searcher."""

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            reason, message = reason_of(trial_exception(trial))
            searcher.resolve_error(trial.trial_id, reason, message)

    return ErrorRelay()


def placement_recorder(searcher: Any) -> Any:
    from ray.tune import Callback

    class PlacementRecorder(Callback):
        """Records where each trial ran, at its first result (driver side, no extra work in the
        worker): user attrs ``node_id`` and ``node_ip`` (from the GCS actor table) and
        ``cuda_visible_devices`` (the trial's GPU share as Ray set it; "" for a CPU trial)."""

        def __init__(self) -> None:
            self.seen: set[str] = set()

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if trial.trial_id in self.seen:
                return
            self.seen.add(trial.trial_id)
            attrs: dict[str, Any] = {}
            where = actor_node(trial)
            if where is not None:
                attrs.update(node_id=where[0], node_ip=where[1])
            if PLACEMENT_KEY in result:
                attrs[PLACEMENT_KEY] = str(result[PLACEMENT_KEY])
            if attrs:
                searcher.record_attrs(trial.trial_id, attrs)

    return PlacementRecorder()


def actor_node(trial: Any) -> tuple[str, str] | None:
    """(node id, node IP) of the actor running a Ray Tune trial, or None when unknown."""
    try:
        from ray._private import state

        actor = trial.temporary_state.ray_actor
        info = state.actors(actor._actor_id.hex())
        address = info.get("Address") or {}
        return str(address["NodeID"]), str(address.get("IPAddress", ""))
    except Exception:
        return None


def trial_exception(trial: Any) -> BaseException | None:
    """The exception a Ray trial failed with (the local pickled copy Ray writes first)."""
    from ray import cloudpickle

    path = getattr(trial, "pickled_error_file", None)
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


# -- one Tuner segment ------------------------------------------------------------------------


def make_tuner(trainable: Any, searcher: Any, run_dir: Path, concurrent: int,
               callbacks: Sequence[Any], scheduler: Any = None) -> Any:
    """The Tuner of one run segment: reused actors, trials under
    ``run_dir/ray/segment-<time>-<id>/trial_<id>``, no retries (a failure is recorded with its
    reason, not retried), one checkpoint kept."""
    from ray import tune

    segment = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=-1,
            max_concurrent_trials=concurrent, reuse_actors=True,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=f"segment-{segment}", storage_path=str((run_dir / "ray").resolve()),
            verbose=0, callbacks=list(callbacks), log_to_file=True,
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


def run_segment(fn: Callable[..., None], settings: Mapping[str, Any], searcher: Any,
                run_dir: Path, resources: TrialResources, scheduler: Any = None,
                jobs: int | None = None,
                on_resources: Callable[[dict[str, Any]], None] | None = None) -> bool:
    """Run ``searcher``'s trials of ``fn`` (a function trainable taking ``settings``) in one
    Tuner segment and tell every trial it left open (``searcher.flush``). ``jobs`` caps the
    trials at once (a fixed job list); ``on_resources`` receives what the segment runs with
    (:meth:`TrialResources.to_dict`, for run.json) before the first trial. Refuses, before any trial, a trial that asks for more
    than the cluster has. Returns True when interrupted (Ctrl-C, or trials left unfinished)."""
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's own console reporter, silent below
    cluster = cluster_resources()
    check_resources(resources, cluster)
    concurrent = max_concurrent(resources, cluster)
    if jobs is not None:
        concurrent = max(1, min(concurrent, jobs))
    settings = {**settings, "plugins": shipped_plugins()}
    trainable = tune.with_resources(tune.with_parameters(fn, settings=dict(settings)),
                                    resources.request())
    tuner = make_tuner(trainable, searcher, run_dir, concurrent,
                       [error_relay(searcher), placement_recorder(searcher)], scheduler)
    if on_resources is not None:
        on_resources({**resources.to_dict(cluster), "max_concurrent": concurrent})
    interrupted = fit_quietly(tuner) or searcher.unfinished()
    searcher.flush(interrupted)
    return interrupted
