"""The default evaluator: train a spec with :func:`nas_attn.train.train_spec` in a Ray worker.

The dataset is loaded once per worker process and kept there (:func:`worker_cache`, keyed by
the resolved data settings); with ``reuse_actors=True`` every later trial on that worker starts
training at once. ``train.threads`` defaults to the trial's ``cpus_per_trial``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nas_attn.search.fingerprint import canonical_json
from nas_attn.search.trainable import worker_cache


def train_and_report(spec: dict, settings: dict,
                     report_epoch: Callable[[Mapping[str, Any]], None]) -> None:
    from nas_attn.data import load_dataset
    from nas_attn.train import TrainConfig, train_spec

    data_cfg = dict(settings["data"])
    bundle = worker_cache("data:" + canonical_json(data_cfg), lambda: load_dataset(data_cfg))
    train = dict(settings["train"])
    if train.get("threads") is None and settings.get("cpus_per_trial"):
        train["threads"] = max(1, int(settings["cpus_per_trial"]))
    cfg = TrainConfig(**train)

    def callback(r: Any) -> bool:
        report_epoch({"val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                      "train_loss": r.train_loss, "elapsed_s": r.elapsed_s,
                      "images_per_s": r.images_per_s})
        return True

    train_spec(spec, bundle, cfg, callback)
