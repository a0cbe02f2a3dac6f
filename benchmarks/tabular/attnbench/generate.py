"""Generating the tabular benchmark through the search runner (Ray Tune + Optuna storage).

Every (architecture, seed) pair of the table's finite space is one runner trial: a
:class:`TableProposer` hands the runner the pairs in a fixed, seed-major order (all
architectures with seed 0, then seed 1, ...), so an interrupted generation still holds whole
seeds. The sampler the runner builds is not consulted: the proposer ignores the Optuna trial's
suggestions and records the pair as user attributes (``table_arch``, ``table_seed``). The
evaluator (:func:`evaluate`, run in the Ray workers) trains the spec with
:func:`nas_attn.train.train_spec` using the pair's seed and reports every epoch; the per-epoch
validation accuracies are read back from the runner's record of each trial in the Optuna
storage (:func:`curve_of`). Ray's per-trial ``result.json`` logs hold them too, but a killed
generation can leave their last lines unwritten while the Optuna trial is COMPLETE.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from nas_attn.search.outcome import INTERMEDIATE

EVALUATOR = "attnbench.generate:evaluate"

# The table's space: none/SE/ECA/CBAM at post_bn or post_add, per stage, in the "tiny" ResNet
# (8/16/32 channels, one BasicBlock per stage): (1 + 3 * 2) ** 3 = 343 architectures.
TABLE_SPACE: dict[str, Any] = {
    "name": "tabular-attention",
    "description": "none/SE/ECA/CBAM at post_bn or post_add per stage of tiny(width 8, 1 block)",
    "backbone": "tiny",
    "backbone_args": {"width": 8, "blocks": 1},
    "num_classes": 10,
    "input_size": [3, 16, 16],
    "stages": {
        "default": {
            "attention": {"none": None, "se": None, "eca": None, "cbam": None},
            "position": ["post_bn", "post_add"],
            "blocks": "all",
        }
    },
}
# A space with a wide accuracy-vs-FLOPs trade-off: none/ECA/CBAM/CA after the residual sum in
# every stage, and RFAConv replacing the block's first 3x3 conv where the maps are large
# (stage 0: +44 % FLOPs, stage 1: +11 %; in stage 2 it would add 5 %): 8 x 8 x 4 = 256.
RFA_SPACE: dict[str, Any] = {
    **TABLE_SPACE,
    "name": "tabular-rfa",
    "description": "none/ECA/CBAM/CA post_add per stage, RFAConv in stages 0-1, of tiny(width "
                   "8, 1 block)",
    "stages": {
        "default": {
            "attention": {"none": None, "eca": None, "cbam": None, "ca": None},
            "position": ["post_add"],
            "blocks": "all",
            "conv": ["standard", "rfaconv"],
        },
        "2": {"conv": ["standard"]},
    },
}
# the shipped tables' spaces, by the name of their file (benchmarks/tabular/data/<name>.npz)
TABLE_SPACES: dict[str, dict[str, Any]] = {"attention343": TABLE_SPACE, "rfa256": RFA_SPACE}
TABLE_DATA: dict[str, Any] = {
    "name": "cluttered-digits", "image_size": 16, "train_size": 1536, "val_size": 500,
    "test_size": 100, "distractors": 1, "noise": 0.05, "seed": 0,
}
# The tool's default recipe (TrainConfig: SGD lr 0.05, momentum 0.9, Nesterov, weight decay
# 5e-4, cosine) at batch 64. An AdamW lr 0.01 table (2026-11-25) converged further but ranked
# architectures no better than chance across seeds (docs/tabular-benchmark.md).
TABLE_TRAIN: dict[str, Any] = {
    "epochs": 20, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
    "nesterov": True, "weight_decay": 5e-4, "threads": 1,
}


def table_space(space: Mapping[str, Any] | None = None) -> Any:
    from nas_attn.space import parse_space

    return parse_space(dict(space or TABLE_SPACE), "tabular benchmark space")


def enumerate_archs(space: Any) -> list[tuple[dict[str, Any], Any]]:
    """Every buildable point of the space: ``(params, canonical spec)`` in the space's order."""
    out = []
    for point in space.enumerate():
        if point.error is None:
            out.append((point.params, point.spec))
    return out


def pair_hash(arch_hash: str, seed: int) -> str:
    """A runner spec hash per (architecture, seed): the runner reuses equal hashes."""
    return hashlib.sha256(f"{arch_hash}:{seed}".encode()).hexdigest()[:16]


class TableProposer:
    """``optuna.Trial -> Proposal``: the next (architecture, seed) pair, seed-major."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], hashes: Sequence[str],
                 costs: Sequence[Mapping[str, float]], seeds: Sequence[int],
                 skip: Collection[str] = ()) -> None:
        self.specs, self.hashes, self.costs = list(specs), list(hashes), list(costs)
        done = set(skip)  # pair hashes already trained (a resumed generation)
        self.pairs = [(a, s) for s in seeds for a in range(len(self.specs))
                      if pair_hash(self.hashes[a], s) not in done]
        self.next = 0

    def __call__(self, trial: Any) -> Any:
        from nas_attn.search.searcher import Proposal

        a, s = self.pairs[self.next % len(self.pairs)]
        self.next += 1
        trial.set_user_attr("table_arch", a)
        trial.set_user_attr("table_seed", s)
        return Proposal({"arch": dict(self.specs[a]), "seed": s},
                        pair_hash(self.hashes[a], s), dict(self.costs[a]))


def evaluate(spec: dict, settings: dict, report_epoch: Callable[[Mapping[str, Any]], None]
             ) -> None:
    """The runner evaluator for one (architecture, seed) pair (runs in a Ray worker)."""
    from nas_attn.data import load_dataset
    from nas_attn.search.fingerprint import canonical_json
    from nas_attn.search.trainable import worker_cache
    from nas_attn.train import TrainConfig, train_spec

    data_cfg = dict(settings["data"])
    bundle = worker_cache("data:" + canonical_json(data_cfg), lambda: load_dataset(data_cfg))
    cfg = TrainConfig(**{**settings["train"], "seed": int(spec["seed"])})

    def callback(r: Any) -> bool:
        report_epoch({"val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                      "train_loss": r.train_loss, "elapsed_s": r.elapsed_s})
        return True

    train_spec(spec["arch"], bundle, cfg, callback)


def curve_of(trial: Any, epochs: int) -> list[float] | None:
    """Validation accuracies at epochs ``1..epochs`` of a runner trial, from the runner's own
    per-epoch record in the Optuna storage (the ``intermediate`` user attribute: ``{"<epoch>":
    [accuracy, cost]}``); None when an epoch is missing."""
    curve = trial.user_attrs.get(INTERMEDIATE) or {}
    try:
        return [float(curve[str(e)][0]) for e in range(1, epochs + 1)]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def collect(study: Any, n_archs: int, seeds: Sequence[int], epochs: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(acc, seconds)``: acc ``(n_archs, n_seeds, epochs)`` (NaN where missing) and the
    training seconds ``(n_archs, n_seeds)`` of every COMPLETE, trained (not reused) trial."""
    from optuna.trial import TrialState

    acc = np.full((n_archs, len(seeds), epochs), np.nan, dtype=np.float32)
    secs = np.full((n_archs, len(seeds)), np.nan, dtype=np.float32)
    col = {s: i for i, s in enumerate(seeds)}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a, s = t.user_attrs.get("table_arch"), t.user_attrs.get("table_seed")
        if a is None or s not in col or t.user_attrs.get("reused"):
            continue
        curve = curve_of(t, epochs)
        if curve is not None:
            acc[a, col[s]] = curve
            secs[a, col[s]] = float(t.user_attrs.get("train_seconds", np.nan))
    return acc, secs
