"""A synthetic search problem: the runner's mechanics without a network to train.

Used by the tests and by benchmarks of the runner's overhead. A spec is ``{"x": i}`` for one
categorical choice ``i`` in ``range(choices)``; its "accuracy" after epoch ``e`` of ``E`` is
``q(i) * (1 - 0.5 ** e)`` with a fixed quality ``q`` and its "flops" ``1000 * (i + 1)``, so the
trade-off has a real Pareto front. ``faults`` maps a choice to a failure the evaluator injects
at its first epoch (``raise``, ``nan``, ``missing``, ``oom``, ``short``: returns early), to
exercise every fail reason through real Ray workers. ``epoch_seconds`` makes epochs take time
(for interruption tests).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.search.searcher import Proposal

FAULTS = ("raise", "nan", "missing", "oom", "short")
METRICS = ("val_accuracy", "flops", "params")  # what a synthetic trial reports (objectives)
EVALUATOR = "nas_attn.search.synthetic:evaluate"


def quality(i: int) -> float:
    """A fixed, non-monotone quality in [0.5, 0.95] per choice (pure)."""
    h = int(hashlib.sha256(str(i).encode()).hexdigest()[:8], 16)
    return round(0.5 + 0.45 * (h % 1000) / 999 * (0.4 + 0.6 * i / (i + 3)), 6)


@dataclass(frozen=True)
class SyntheticProblem:
    choices: int = 8
    epochs: int = 3
    faults: Mapping[int, str] = field(default_factory=dict)
    epoch_seconds: float = 0.0
    max_flops: float | None = None  # proposals above it are over budget

    def __post_init__(self) -> None:
        for k, v in self.faults.items():
            if v not in FAULTS:
                raise ConfigError(f"synthetic.faults.{k}", v, "unknown fault", FAULTS)

    def to_dict(self) -> dict[str, Any]:
        return {"choices": self.choices, "epochs": self.epochs,
                "faults": {str(k): v for k, v in self.faults.items()},
                "epoch_seconds": self.epoch_seconds, "max_flops": self.max_flops}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticProblem:
        return cls(choices=int(d["choices"]), epochs=int(d["epochs"]),
                   faults={int(k): str(v) for k, v in d.get("faults", {}).items()},
                   epoch_seconds=float(d.get("epoch_seconds", 0.0)),
                   max_flops=d.get("max_flops"))

    def grid(self) -> dict[str, list[int]]:
        return {"x": list(range(self.choices))}

    def propose(self, trial: Any) -> Proposal:
        i = int(trial.suggest_categorical("x", list(range(self.choices))))
        spec = {"x": i, "fault": self.faults.get(i)}
        h = hashlib.sha256(str(i).encode()).hexdigest()[:16]
        flops = 1000.0 * (i + 1)
        violation = None
        if self.max_flops is not None and flops > self.max_flops:
            violation = f"flops {flops:.0f} > budget {self.max_flops:.0f}"
        return Proposal(spec, h, {"flops": flops, "params": 10.0 * (i + 1)}, violation)

    def settings(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "epoch_seconds": self.epoch_seconds}


def evaluate(spec: dict, settings: dict, report_epoch: Callable[[Mapping[str, Any]], None]
             ) -> None:
    """The synthetic evaluator (runs in a Ray worker)."""
    i, fault = int(spec["x"]), spec.get("fault")
    epochs = int(settings["epochs"])
    start = int((settings.get("_trial") or {}).get("resume_epoch") or 0)  # promoted: go on
    for e in range(start + 1, epochs + 1):
        if settings.get("epoch_seconds"):
            time.sleep(float(settings["epoch_seconds"]))
        if fault == "raise":
            raise RuntimeError(f"synthetic failure for x={i}")
        if fault == "oom":
            raise MemoryError(f"synthetic out of memory for x={i}")
        if fault == "short":
            return
        acc = quality(i) * (1 - 0.5 ** e)
        if fault == "nan":
            report_epoch({"val_accuracy": float("nan"), "train_loss": float("nan")})
        elif fault == "missing":
            report_epoch({"train_loss": 1.0})
        else:
            report_epoch({"val_accuracy": acc, "train_loss": 1.0 - acc, "images_per_s": 1e3})
