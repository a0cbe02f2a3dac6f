"""A one-shot study's settings (``oneshot:``) and the pure decisions of its pipeline.

::

    evaluator: supernet           # or `nas-attn search STUDY --one-shot`
    oneshot: {mode: spos, epochs: 20, proposals: 300, confirm: null, seeds: 1,
              calibration_batches: 4}

- ``mode``: how the supernet is trained (``spos`` or ``fairnas``, docs/one-shot.md);
- ``epochs``: supernet training epochs (the study's recipe otherwise: optimiser, batch, lr);
- ``proposals``: architectures Optuna proposes against the supernet (a duplicate is not scored
  again, so a small space needs no more than its size);
- ``confirm``: K, how many architectures of the predicted front are trained stand-alone
  (null: the predicted front's size, at most :data:`CONFIRM_CAP`);
- ``seeds``: K, confirmation seeds: each confirmed architecture is trained with the study's
  seed and the next K - 1, its values the mean (:mod:`nas_attn.search.confirm_seeds`);
- ``calibration_batches``: training batches for each score's BatchNorm recalibration.

:func:`pick_confirmations` (which architectures to confirm) and :func:`still_to_confirm`
(which of them a resumed run still has to train) are pure; the pipeline around them is
:mod:`nas_attn.search.oneshot_run`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas_attn.config import check_choice, check_int
from nas_attn.errors import ConfigError

EVALUATORS = ("train", "supernet")
CONFIRM_CAP = 10  # the default K: the predicted front's size, at most this many


@dataclass(frozen=True)
class OneShotSettings:
    mode: str = "spos"
    epochs: int = 20
    proposals: int = 300  # measured: 1-3 s each on the busy 2-core machine (one-shot.md)
    confirm: int | None = None
    seeds: int = 1
    calibration_batches: int = 4

    def __post_init__(self) -> None:
        from nas_attn.oneshot.training import MODES  # torch: a study's space has loaded it

        check_choice(self.mode, "oneshot.mode", MODES)
        check_int(self.epochs, "oneshot.epochs", low=1)
        check_int(self.proposals, "oneshot.proposals", low=1)
        check_int(self.confirm, "oneshot.confirm", low=1, none_ok=True)
        check_int(self.seeds, "oneshot.seeds", low=1)
        check_int(self.calibration_batches, "oneshot.calibration_batches", low=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_oneshot(evaluator: Any, raw: Any) -> OneShotSettings | None:
    """The study's ``evaluator`` and ``oneshot`` keys: settings for ``supernet``, else None."""
    from nas_attn.config import config_from_mapping

    check_choice(evaluator, "evaluator", EVALUATORS)
    if evaluator != "supernet":
        if raw is not None:
            raise ConfigError("oneshot", raw, "one-shot settings need `evaluator: supernet`",
                              ["evaluator: supernet"])
        return None
    return config_from_mapping(OneShotSettings, raw, "oneshot")


@dataclass(frozen=True)
class Prediction:
    """One architecture scored against the supernet: its values in the objectives' order."""

    spec_hash: str
    values: tuple[float, ...]
    params: Mapping[str, Any]  # the Optuna parameters it was proposed with
    number: int  # its trial in the predicted study


def pick_confirmations(predictions: Sequence[Prediction], directions: Sequence[str],
                       k: int | None) -> list[Prediction]:
    """The architectures to train stand-alone, in the order they are confirmed (pure).

    Duplicates (one spec hash) count once. Non-dominated layers are taken best first; within
    a layer, by crowding distance (the front's two ends first, then the most isolated), ties
    by the first objective's predicted value. ``k`` None: the first layer's size, at most
    :data:`CONFIRM_CAP`.
    """
    from nas_attn.pareto import crowding_distance, non_dominated_sort

    unique: dict[str, Prediction] = {}
    for p in predictions:
        unique.setdefault(p.spec_hash, p)
    pool = list(unique.values())
    if not pool:
        return []
    layers = non_dominated_sort([p.values for p in pool], directions)
    if k is None:
        k = min(len(layers[0]), CONFIRM_CAP)
    sign = 1.0 if directions[0] == "maximize" else -1.0
    out: list[Prediction] = []
    for layer in layers:
        dist = crowding_distance([pool[i].values for i in layer], directions)
        order = sorted(range(len(layer)), key=lambda j: (-dist[j],
                                                         -sign * pool[layer[j]].values[0],
                                                         pool[layer[j]].number))
        out += [pool[layer[j]] for j in order]
        if len(out) >= k:
            break
    return out[:k]


def still_to_confirm(picks: Sequence[Prediction], confirmed: set[str]) -> list[Prediction]:
    """The picks whose spec hash has no counted trial of this run yet, in order (pure)."""
    return [p for p in picks if p.spec_hash not in confirmed]
