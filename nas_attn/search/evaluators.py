"""The default evaluator: train a spec with :func:`nas_attn.train.train_spec` in a Ray worker.

The dataset is loaded once per worker process and kept there (:func:`worker_cache`, keyed by
the resolved data settings); with ``reuse_actors=True`` every later trial on that worker starts
training at once. ``train.threads`` defaults to the trial's ``cpus_per_trial``.

Checkpoints: when a trial has trained its full epoch budget, its final weights are written to
``RUN_DIR/checkpoints/<spec_hash>-s<seed>.safetensors`` (the folder comes from the trainable's
``_trial`` context, see :mod:`nas_attn.search.trainable`), so ``nas-attn export`` needs no
retraining. ``keep_checkpoints: false`` in the evaluator settings turns this off. The write is
atomic (temporary file + rename) and a failure to write only logs a warning: a full disk must
not turn a trained trial into a failed one (export then retrains it). Cost: one safetensors
write of the state dict per COMPLETE trial, after the last report.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas_attn.search.fingerprint import canonical_json
from nas_attn.search.trainable import TRIAL_KEY, checkpoint_name, worker_cache

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "nas-attn-checkpoint"


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

    from nas_attn.export.weights import save_weights

    model = model.to("cpu")
    if any(p.dim() == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.contiguous_format)  # after channels_last training
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_weights(model, tmp, metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _keep(result: Any, spec_hash: str | None, checkpoint_dir: str | None, seed: int) -> None:
    if not spec_hash or not checkpoint_dir or result.stopped_early:
        return
    path = Path(checkpoint_dir) / checkpoint_name(spec_hash, seed)
    try:
        save_checkpoint(result.model, path, checkpoint_metadata(
            spec_hash, seed, result.epochs_trained, result.val_accuracy))
    except Exception as e:  # never fail a trained trial over its checkpoint
        log.warning("could not keep the checkpoint %s: %s: %s", path, type(e).__name__, e)


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
    if train.get("threads") is None and settings.get("cpus_per_trial"):
        train["threads"] = max(1, int(settings["cpus_per_trial"]))
    cfg = TrainConfig(**train)
    with_test = bool(settings.get("evaluate_test", False))
    last: dict[str, Any] = {}

    def callback(r: Any) -> bool:
        metrics = {"val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                   "train_loss": r.train_loss, "elapsed_s": r.elapsed_s,
                   "images_per_s": r.images_per_s}
        if with_test and r.epoch == cfg.epochs:
            last.update(metrics)  # reported below, with the test accuracy
        else:
            report_epoch(metrics)
        return True

    result = train_spec(spec, bundle, cfg, callback, evaluate_test=with_test)
    if with_test:
        report_epoch({**last, "test_accuracy": result.test_accuracy})
    trial = dict(settings.get(TRIAL_KEY) or {})
    if settings.get("keep_checkpoints", True):
        _keep(result, trial.get("spec_hash"), trial.get("checkpoint_dir"), cfg.seed)
