"""The Ray Tune trainable: one function boundary between the runner and training.

``run_trial(config, settings)`` runs inside a Ray worker. It resolves the evaluator named in
``settings["evaluator"]`` (``"module:function"``) and calls::

    evaluate(spec: dict, settings: dict, report_epoch: Callable[[dict], None]) -> None

``report_epoch`` is called once per epoch with at least ``val_accuracy``; the wrapper numbers
the epochs, adds the costs computed by the driver (flops, params, latency_ms) and forwards the
result to ``ray.tune.report``. It is also the place where a bad result becomes a typed failure
before Ray or the scheduler sees it: a missing ``val_accuracy`` raises
``TrialError("missing_metric")``, a non-finite one ``NonFiniteLossError``, an evaluator that
returns before the epoch budget ``TrialError("missing_metric")``. Exceptions that are not
``TrialError`` become ``oom`` (MemoryError, torch OOM) or ``error``. The runner reads the reason
back from the Ray trial's error (see :func:`nas_attn.search.execution.error_relay`).

GPU shares: every result carries ``cuda_visible_devices``, the devices Ray gave the trial's
worker ("" when none), which the driver records per trial. ``train.device: auto`` follows the
trial's share (:func:`trial_device`): CPU for a trial without a GPU share, even on a machine
with GPUs, so CPU trials never crowd the GPUs of their neighbours.

Worker reuse and resident data: the runner starts trials with ``reuse_actors=True``, so one
worker process serves many trials; :func:`worker_cache` keeps objects (the dataset) in that
process across trials, keyed by a fingerprint of their settings.

Trial context for evaluators: the evaluator's settings get a reserved key ``"_trial"`` with the
trial's ``spec_hash`` and ``checkpoint_dir`` (where a COMPLETE trial's final weights go, see
:func:`checkpoint_path`; None when weights are not kept). ``checkpoint_dir`` is
``settings["checkpoint_dir"]`` when the runner passes that key (None turns checkpoints off);
otherwise it is derived from Ray's storage path, which the runner sets to ``RUN_DIR/ray``: the
checkpoints go to ``RUN_DIR/checkpoints`` when ``RUN_DIR/run.json`` is visible from the worker.
On a multi-node cluster without a shared file system a worker on another machine does not see
the run folder, so it keeps no checkpoint (export then retrains that architecture).

Promotion (``early_stopping.promote``): the context also carries ``state_dir``
(``RUN_DIR/states`` when the runner passes ``state_dir`` and the worker sees the run folder,
else None), ``save_state_at`` (the rung epochs, where an evaluator keeps its resumable training
state, :func:`state_name`) and ``resume_epoch``: a promoted trial (``config["resume_epoch"]``)
goes on after that epoch, so its first report is epoch ``resume_epoch + 1``. An evaluator that
cannot resume must retrain the first ``resume_epoch`` epochs without reporting them; one that
reports past the epoch budget is failed (``missing_metric``), as one that reports too few.

User attrs from an evaluator: a report may carry ``user_attrs`` (:data:`USER_ATTRS_KEY`), a JSON
object as a string; the searcher sets the last report's on the trial when it ends (the
multi-seed confirmation's per-seed accuracies, :mod:`nas_attn.search.confirm_seeds`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import NonFiniteLossError, OutOfMemoryError, TrialError

Evaluate = Callable[[dict, dict, Callable[[Mapping[str, Any]], None]], None]
_CACHE: dict[str, Any] = {}
CHECKPOINT_DIR = "checkpoints"
STATE_DIR = "states"  # resumable states of stopped trials (promotion)
TRIAL_KEY = "_trial"
PLACEMENT_KEY = "cuda_visible_devices"
# a report's JSON object of user attrs for the trial (the last report's are set when it ends)
USER_ATTRS_KEY = "user_attrs"


def trial_device(requested: str, gpus_per_trial: float | None) -> str:
    """The training device of a trial (pure): ``auto`` becomes ``cpu`` for a trial without a
    GPU share (``gpus_per_trial`` 0); anything else, and ``auto`` with a share (CUDA when the
    worker sees it), is kept."""
    if requested == "auto" and gpus_per_trial is not None and gpus_per_trial <= 0:
        return "cpu"
    return requested


def checkpoint_name(spec_hash: str, seed: int) -> str:
    """The file name of the final weights of spec ``spec_hash`` trained with ``seed`` (pure).

    One file per (architecture, seed): a study trains each spec hash once per seed (duplicates
    are reused, see docs/search.md), so a reused trial finds its weights under the same name.
    """
    return f"{spec_hash}-s{int(seed)}.safetensors"


def state_name(spec_hash: str, seed: int) -> str:
    """The file name of the resumable training state of a stopped trial (pure)."""
    return f"{spec_hash}-s{int(seed)}.state.pt"


def checkpoint_path(run_dir: str | Path, spec_hash: str, seed: int) -> Path:
    """``RUN_DIR/checkpoints/<spec_hash>-s<seed>.safetensors`` (pure)."""
    return Path(run_dir) / CHECKPOINT_DIR / checkpoint_name(spec_hash, seed)


def trial_checkpoint_dir(settings: Mapping[str, Any]) -> str | None:
    """The folder for this trial's checkpoint: the runner's ``checkpoint_dir`` setting (when
    this worker sees the run folder's ``run.json``), or
    ``RUN_DIR/checkpoints`` derived from Ray's storage path (``RUN_DIR/ray``) when this worker
    sees ``RUN_DIR/run.json``; None when neither applies."""
    if "checkpoint_dir" in settings:
        return _visible(settings["checkpoint_dir"])
    try:
        from ray import tune

        storage = Path(tune.get_context().get_storage().storage_fs_path)
    except Exception:  # not in a Tune session, or a remote (URI) storage
        return None
    run_dir = storage.parent
    if not (run_dir / "run.json").is_file():
        return None
    return str(run_dir / CHECKPOINT_DIR)


def _visible(folder: str | None) -> str | None:
    """``folder`` when this worker sees its run folder (``folder/../run.json``), else None: on
    another node without a shared file system the run folder is not there, so keep nothing."""
    if folder is None:
        return None
    return str(folder) if (Path(folder).parent / "run.json").is_file() else None


def worker_cache(key: str, factory: Callable[[], Any]) -> Any:
    """A value kept in this worker process across trials (built once by ``factory``)."""
    if key not in _CACHE:
        _CACHE[key] = factory()
    return _CACHE[key]


def resolve_evaluator(name: str) -> Evaluate:
    from nas_attn.errors import ConfigError

    module, _, attr = name.partition(":")
    if not module or not attr:
        raise ConfigError("evaluator", name, "expected 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError("evaluator", name, f"cannot import it ({e})") from None
    if not callable(fn):
        raise ConfigError("evaluator", name, "is not callable")
    return fn


def check_metrics(metrics: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    """The result to report for ``epoch``, or a TrialError for a missing/non-finite accuracy."""
    if not isinstance(metrics, Mapping) or "val_accuracy" not in metrics:
        keys = sorted(metrics) if isinstance(metrics, Mapping) else type(metrics).__name__
        raise TrialError("missing_metric", f"epoch {epoch} reported no 'val_accuracy' ({keys})")
    acc = metrics["val_accuracy"]
    if not isinstance(acc, int | float) or not math.isfinite(acc):
        raise NonFiniteLossError(f"epoch {epoch}: val_accuracy is {acc!r}")
    out = {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}
    out["val_accuracy"] = float(acc)
    out["epoch"] = epoch
    return out


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    name = type(e).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(e).lower()


def run_trial(config: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Ray function trainable (wrapped with ``tune.with_parameters(settings=...)``)."""
    from ray import tune

    cpus = max(1, math.floor(float(settings.get("cpus_per_trial", 1))))
    try:
        import torch

        torch.set_num_threads(cpus)
    except ImportError:  # an evaluator without torch
        pass
    if settings.get("plugins"):  # the driver's plugins, shipped by Ray's runtime environment
        from nas_attn.plugins import load_shipped

        load_shipped(settings["plugins"])
    spec = json.loads(config["spec"])
    costs = dict(config.get("costs", {}))
    epochs = int(settings["epochs"])
    evaluate = resolve_evaluator(str(settings["evaluator"]))
    resume_epoch = int(config.get("resume_epoch") or 0)
    state = {"epoch": resume_epoch}

    def report_epoch(metrics: Mapping[str, Any]) -> None:
        epoch = state["epoch"] + 1
        if epoch > epochs:
            raise TrialError("missing_metric", f"the evaluator reported epoch {epoch} of "
                             f"{epochs} (a promoted trial starts after epoch {resume_epoch})")
        result = check_metrics(metrics, epoch)
        result.update(costs)
        result["spec_hash"] = config["spec_hash"]
        result[PLACEMENT_KEY] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        state["epoch"] = epoch
        tune.report(result)

    evaluate_settings = dict(settings.get("evaluate", {}))
    evaluate_settings[TRIAL_KEY] = {"spec_hash": str(config["spec_hash"]),
                                    "checkpoint_dir": trial_checkpoint_dir(settings),
                                    "state_dir": _visible(settings.get("state_dir")),
                                    "save_state_at": list(settings.get("save_state_at", [])),
                                    "resume_epoch": resume_epoch}
    try:
        evaluate(spec, evaluate_settings, report_epoch)
    except TrialError:
        raise
    except Exception as e:
        if _is_oom(e):
            raise OutOfMemoryError(f"{type(e).__name__}: {e}") from e
        raise TrialError("error", f"{type(e).__name__}: {e}") from e
    if state["epoch"] < epochs:
        raise TrialError("missing_metric",
                         f"the evaluator returned after {state['epoch']} of {epochs} epochs")
