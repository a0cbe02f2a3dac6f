"""Confirmation with several seeds (``oneshot.seeds: K``, docs/one-shot.md).

A confirmed architecture is one trial of the run's study, as with one seed (the study trains a
spec hash once, docs/search.md); its Ray trial runs :func:`train_seeds`, which calls the
study's own evaluator (``train_and_report`` by default) once per seed, the study's seed and the
next ``K - 1`` (:func:`nas_attn.config.parse_seeds`, as export's ``--retrain --seeds K``), and
reports the **mean over the seeds** epoch by epoch once every seed has trained, so the trial's
values, the run's front, the dashboard, ``load_run`` and export read the mean as they read any
trial. Each seed's final accuracy is set on the trial as user attrs ``confirm_seeds`` and
``seed_val_accuracy`` (lists in the seeds' order), through the report's ``user_attrs`` channel
(:data:`nas_attn.search.trainable.USER_ATTRS_KEY`).

Each seed's training keeps its final weights as a normal trial does
(``checkpoints/<spec_hash>-s<seed>.safetensors``: export finds the first seed's under the name
it looks for) and, beside them, its per-epoch curve (``<spec_hash>-s<seed>.seed.json``, written
atomically after the weights). A resumed run's new trial of the architecture (the killed one is
reconciled as orphaned) reads a finished seed's curve instead of training it again; without
the run folder in view (a worker on another node) every seed is trained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nas_attn.files import write_atomically
from nas_attn.objectives import is_finite_number
from nas_attn.search.trainable import TRIAL_KEY, USER_ATTRS_KEY, resolve_evaluator

log = logging.getLogger(__name__)
SEEDS_EVALUATOR = "nas_attn.search.confirm_seeds:train_seeds"
SEEDS_KEY = "confirm_seeds"  # evaluator settings: {"evaluator": "module:function", "seeds": [..]}
PER_SEED = "seed_val_accuracy"  # user attr: each seed's final val accuracy
RECORD_FORMAT = "nas-attn-seed-curve"


def seed_record_name(spec_hash: str, seed: int) -> str:
    """The file of one seed's finished curve, beside its weights (pure)."""
    return f"{spec_hash}-s{int(seed)}.seed.json"


def seeded_settings(settings: Mapping[str, Any], evaluator: str, seeds: Sequence[int]
                    ) -> dict[str, Any]:
    """The evaluator settings of a multi-seed confirmation (pure)."""
    return {**dict(settings), SEEDS_KEY: {"evaluator": evaluator,
                                          "seeds": [int(s) for s in seeds]}}


def mean_curve(curves: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, float]]:
    """Epoch by epoch, the mean over the seeds of every number all of them reported (pure)."""
    if not curves:
        return []
    out = []
    for epoch in zip(*curves, strict=True):
        keys = set.intersection(*(set(m) for m in epoch))
        out.append({k: sum(float(m[k]) for m in epoch) / len(epoch) for k in sorted(keys)
                    if all(isinstance(m[k], int | float) and not isinstance(m[k], bool)
                           for m in epoch)})
    return out


def _finished(path: Path | None, spec_hash: str, seed: int, epochs: int
              ) -> list[dict[str, Any]] | None:
    """A finished seed's curve at ``path``, or None (then the seed trains)."""
    if path is None or not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("cannot read %s (%s); training seed %d again", path, e, seed)
        return None
    if (rec.get("format") != RECORD_FORMAT or rec.get("spec_hash") != spec_hash
            or rec.get("seed") != seed or len(rec.get("curve") or ()) != epochs):
        log.warning("%s is not seed %d's %d epochs of %s; training it again", path, seed,
                    epochs, spec_hash)
        return None
    return list(rec["curve"])


def _keep(path: Path | None, spec_hash: str, seed: int, curve: list[dict[str, Any]]) -> None:
    if path is None:
        return
    text = json.dumps({"format": RECORD_FORMAT, "spec_hash": spec_hash, "seed": seed,
                       "curve": curve}, sort_keys=True)
    try:
        write_atomically(path, lambda p: p.write_text(text))
    except OSError as e:  # never fail a trained seed over its record: a resume retrains it
        log.warning("could not keep %s: %s", path, e)


def train_seeds(spec: dict, settings: dict,
                report_epoch: Callable[[Mapping[str, Any]], None]) -> None:
    """The evaluator of a multi-seed confirmation: ``settings[SEEDS_KEY]["evaluator"]`` once
    per seed (its ``train.seed`` replaced), finished seeds read back, then the mean curve
    reported; the last report carries each seed's accuracy as user attrs."""
    conf = settings[SEEDS_KEY]
    inner = resolve_evaluator(str(conf["evaluator"]))
    trial = dict(settings.get(TRIAL_KEY) or {})
    spec_hash, folder = str(trial.get("spec_hash", "")), trial.get("checkpoint_dir")
    epochs = int(settings["train"]["epochs"])
    base = {k: v for k, v in settings.items() if k != SEEDS_KEY}
    curves: list[list[dict[str, Any]]] = []
    for seed in (int(s) for s in conf["seeds"]):
        path = Path(folder) / seed_record_name(spec_hash, seed) if folder and spec_hash else None
        curve = _finished(path, spec_hash, seed, epochs)
        if curve is None:
            curve = []
            inner(spec, {**base, "train": {**dict(base["train"]), "seed": seed}},
                  lambda m, c=curve: c.append(dict(m)))
            if len(curve) == epochs and all(is_finite_number(m.get("val_accuracy")) for m in curve):
                _keep(path, spec_hash, seed, curve)
        curves.append(curve)
    if any(len(c) != epochs for c in curves):  # the trainable names the missing epochs
        curves = [c[:min(len(c) for c in curves)] for c in curves]
    mean = mean_curve(curves)
    for i, metrics in enumerate(mean):
        if i == len(mean) - 1:
            metrics = {**metrics, USER_ATTRS_KEY: json.dumps(
                {"confirm_seeds": [int(s) for s in conf["seeds"]],
                 PER_SEED: [c[-1].get("val_accuracy") for c in curves]})}
        report_epoch(metrics)

