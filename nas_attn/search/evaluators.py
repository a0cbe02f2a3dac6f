"""The default evaluator: train a spec with :func:`nas_attn.train.train_spec` in a Ray worker.

The dataset is loaded once per worker process and kept there (:func:`worker_cache`, keyed by
the resolved data settings); with ``reuse_actors=True`` every later trial on that worker starts
training at once. ``train.threads`` defaults to the trial's ``cpus_per_trial``.

Checkpoints: when a trial has trained its full epoch budget, its final weights are written to
``RUN_DIR/checkpoints/<spec_hash>-s<seed>.safetensors`` (the folder comes from the trainable's
``_trial`` context, see :mod:`nas_attn.search.trainable`), so ``nas-attn export`` needs no
retraining. On a GPU every report carries ``gpu_peak_mb`` (``torch.cuda.max_memory_allocated``
since the trial started). ``train.device: auto`` follows the trial's GPU share (CPU without one, see
:func:`~nas_attn.search.trainable.trial_device`). ``keep_checkpoints: false`` in the evaluator settings turns this off. The write is
atomic (temporary file + rename) and a failure to write only logs a warning: a full disk must
not turn a trained trial into a failed one (export then retrains it). Cost: one safetensors
write of the state dict per COMPLETE trial, after the last report.

Promotion (``early_stopping.promote``): at each rung epoch (``save_state_at``) the full
training state (weights, optimiser, schedule position, RNG; :mod:`nas_attn.train_state`) is
written to ``RUN_DIR/states/<spec_hash>-s<seed>.state.pt`` before the epoch is reported, so a
trial the rung stops leaves the state of that rung behind. A promoted trial
(``resume_epoch`` > 0) loads it and trains on; when the file is missing (a worker on another
node) or holds another epoch, it retrains the first ``resume_epoch`` epochs without reporting
them, which gives the same curve with the fixed seed. A trial that trains its full budget
deletes its state file. Writing or reading a state never fails a trial (a warning is logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas_attn.files import write_atomically
from nas_attn.search.fingerprint import canonical_json
from nas_attn.search.trainable import (
    TRIAL_KEY,
    checkpoint_name,
    state_name,
    trial_device,
    worker_cache,
)

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "nas-attn-checkpoint"
GPU_PEAK_KEY = "gpu_peak_mb"  # torch.cuda.max_memory_allocated of the trial, reported per epoch


def checkpoint_metadata(spec_hash: str, seed: int, epochs: int, val_accuracy: float
                        ) -> dict[str, str]:
    """The safetensors metadata of a trial checkpoint: one key (safetensors keeps metadata in an
    unordered map, so one JSON value keeps the file deterministic)."""
    return {"nas_attn": json.dumps({"format": CHECKPOINT_FORMAT, "spec_hash": spec_hash,
                                    "seed": int(seed), "epochs": int(epochs),
                                    "val_accuracy": float(val_accuracy)}, sort_keys=True)}


def save_checkpoint(model: Any, path: Path, metadata: Mapping[str, str]) -> Path:
    """Write ``model``'s weights (CPU, contiguous) to ``path`` atomically."""
    import torch

    from nas_attn.weights import save_weights

    model = model.to("cpu")
    if any(p.dim() == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.contiguous_format)  # after channels_last training
    return write_atomically(path, lambda tmp: save_weights(model, tmp, metadata))


def _keep(result: Any, spec_hash: str | None, checkpoint_dir: str | None, seed: int) -> None:
    if not spec_hash or not checkpoint_dir or result.stopped_early:
        return
    path = Path(checkpoint_dir) / checkpoint_name(spec_hash, seed)
    try:
        save_checkpoint(result.model, path, checkpoint_metadata(
            spec_hash, seed, result.epochs_trained, result.val_accuracy))
    except Exception as e:  # never fail a trained trial over its checkpoint
        log.warning("could not keep the checkpoint %s: %s: %s", path, type(e).__name__, e)


def _state_file(trial: Mapping[str, Any], seed: int) -> Path | None:
    if not trial.get("state_dir") or not trial.get("spec_hash"):
        return None
    return Path(trial["state_dir"]) / state_name(trial["spec_hash"], seed)


def _resume_state(path: Path | None, epoch: int) -> dict[str, Any] | None:
    """The state saved after ``epoch`` at ``path``, or None (then the trial retrains)."""
    from nas_attn.train_state import load_state

    if not epoch or path is None or not path.is_file():
        return None
    try:
        state = load_state(path)
    except Exception as e:
        log.warning("cannot resume from %s (%s); retraining its first %d epochs", path, e, epoch)
        return None
    if int(state.get("epoch", -1)) != epoch:
        log.warning("%s holds epoch %s, not %d; retraining", path, state.get("epoch"), epoch)
        return None
    return state


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    from nas_attn.train_state import save_state

    try:
        save_state(state, path)
    except Exception as e:  # never fail a trial over its resumable state
        log.warning("could not keep the training state %s: %s: %s", path, type(e).__name__, e)


def _reset_gpu_peak() -> bool:
    """Start this trial's GPU memory peak afresh; False when the worker has no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def train_and_report(spec: dict, settings: dict,
                     report_epoch: Callable[[Mapping[str, Any]], None]) -> None:
    """Train with the study's data and training settings, reporting every epoch. With
    ``evaluate_test: true`` the last epoch's report also carries ``test_accuracy`` (the test
    split evaluated once, after training; for final reports only)."""
    from nas_attn.data import load_dataset
    from nas_attn.train import TrainConfig, train_spec

    data_cfg = dict(settings["data"])
    bundle = worker_cache("data:" + canonical_json(data_cfg), lambda: load_dataset(data_cfg))
    train = dict(settings["train"])
    train["device"] = trial_device(train.get("device", "auto"), settings.get("gpus_per_trial"))
    if train.get("threads") is None and settings.get("cpus_per_trial"):
        train["threads"] = max(1, int(settings["cpus_per_trial"]))
    cfg = TrainConfig(**train)
    with_test = bool(settings.get("evaluate_test", False))
    last: dict[str, Any] = {}
    trial = dict(settings.get(TRIAL_KEY) or {})
    start = int(trial.get("resume_epoch") or 0)
    state_path = _state_file(trial, cfg.seed)

    cuda = _reset_gpu_peak()

    def callback(r: Any) -> bool:
        if r.epoch <= start:  # retrained because the state was not there: reported already
            return True
        metrics = {"val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                   "train_loss": r.train_loss, "elapsed_s": r.elapsed_s,
                   "images_per_s": r.images_per_s}
        if cuda:  # this trial's peak so far (the worker process is reused across trials)
            import torch

            metrics[GPU_PEAK_KEY] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if with_test and r.epoch == cfg.epochs:
            last.update(metrics)  # reported below, with the test accuracy
        else:
            report_epoch(metrics)
        return True

    result = train_spec(
        spec, bundle, cfg, callback, evaluate_test=with_test,
        resume_state=_resume_state(state_path, start),
        save_state_at=(trial.get("save_state_at") or ()) if state_path else (),
        on_state=(lambda st: _write_state(state_path, st)) if state_path else None)
    if with_test:
        report_epoch({**last, "test_accuracy": result.test_accuracy})
    if state_path is not None and not result.stopped_early:
        state_path.unlink(missing_ok=True)
    if settings.get("keep_checkpoints", True):
        _keep(result, trial.get("spec_hash"), trial.get("checkpoint_dir"), cfg.seed)
