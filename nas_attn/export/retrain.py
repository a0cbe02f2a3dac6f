"""Retraining a picked architecture from scratch over several seeds, with mean and 95% CI.

A search ranks architectures by one short training run each (one seed, the search's epoch
budget, selection on the validation split), so the front's numbers are optimistic and noisy.
``nas-attn export --retrain --epochs E --seeds K`` trains the picked spec again with seeds
``train.seed, train.seed + 1, ..., train.seed + K - 1`` and reports, per objective, the mean and
the 95% t-interval of the mean (:func:`nas_attn.ablation.stats.t_interval`; needs K >= 2), plus
the test-split accuracy, which played no part in the selection.

Which seed is exported: the **first** (``train.seed``), never the best. Picking the seed with
the highest validation accuracy would select on the validation split once more, and the card
would then show the luckiest draw instead of a typical one; the first seed's accuracy is an
unbiased draw from the distribution the interval describes, and it is reproducible from the
card alone. The per-seed table shows what the other seeds reached.

Runs in-process and one seed after another (no Ray): an export retrains a handful of
architectures, each training already uses every core (or the GPU) through torch, and starting a
Ray runtime would add seconds and a second copy of the data for no gain. The dataset is loaded
once by the caller and shared by every seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_attn.errors import ConfigError

ACCURACY_METRICS = ("val_accuracy", "test_accuracy")


@dataclass(frozen=True)
class SeedRun:
    """One seed's retraining result (accuracies are fractions in [0, 1])."""

    seed: int
    val_accuracy: float
    best_val_accuracy: float
    test_accuracy: float | None
    epochs: int
    train_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "val_accuracy": self.val_accuracy,
                "best_val_accuracy": self.best_val_accuracy,
                "test_accuracy": self.test_accuracy, "epochs": self.epochs,
                "train_time_s": round(self.train_time_s, 3)}


@dataclass
class Retrained:
    """The per-seed results, the summary, and the exported (first) seed's model."""

    runs: list[SeedRun]
    summary: dict[str, dict[str, Any]]
    exported_seed: int
    model: Any = field(repr=False)

    def report(self) -> dict[str, Any]:
        """The JSON-ready record for the model card (``extra.retrain``)."""
        return {"seeds": [r.seed for r in self.runs], "exported_seed": self.exported_seed,
                "exported_seed_rule": "first seed (no selection on the validation split)",
                "epochs": self.runs[0].epochs if self.runs else None,
                "confidence": 0.95, "interval": "t-interval of the mean over seeds",
                "per_seed": [r.to_dict() for r in self.runs], "summary": self.summary}


def check_retrain_args(epochs: int | None, seeds: Any) -> None:
    """ConfigError for a bad ``--epochs`` / ``--seeds``."""
    from nas_attn.config import parse_seeds

    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):
        raise ConfigError("--epochs", epochs, "expected an integer >= 1")
    parse_seeds(seeds, "--seeds")


def seed_list(first: int, seeds: Any) -> list[int]:
    """``--seeds``: K seeds counting from ``first`` (the study's seed), or exactly a list."""
    from nas_attn.config import parse_seeds

    return list(parse_seeds(seeds, "--seeds", first=int(first)))


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def summarize(runs: Sequence[SeedRun], objectives: Sequence[tuple[str, str]],
              costs: Mapping[str, float], confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Mean and t-interval per objective (and the test accuracy) over the seeds (pure).

    Accuracy objectives vary with the seed; cost objectives (FLOPs, params, latency from the
    search) are properties of the architecture, so their interval has zero width. Intervals
    of fewer than two values are None (JSON has no NaN).
    """
    from nas_attn.ablation.stats import t_interval

    out: dict[str, dict[str, Any]] = {}
    names = [n for n, _ in objectives]
    for name in [*names, *(m for m in ACCURACY_METRICS if m not in names)]:
        if name in ACCURACY_METRICS:
            values = [getattr(r, name) for r in runs]
            if any(v is None for v in values):
                continue
        elif name in costs:
            values = [float(costs[name])] * len(runs)
        else:
            continue
        mean, low, high = t_interval(values, confidence)
        out[name] = {"mean": _finite_or_none(mean), "ci_low": _finite_or_none(low),
                     "ci_high": _finite_or_none(high), "n": len(values),
                     "std": _finite_or_none(_std(values))}
    return out


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return math.nan
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _num(name: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    return _pct(v) if name in ACCURACY_METRICS else f"{v:,.6g}"


def render_notes(report: Mapping[str, Any]) -> str:
    """Markdown for MODEL_CARD.md's notes: the per-seed table and the summary (pure)."""
    lines = [f"Retrained from scratch for {report['epochs']} epochs with seeds "
             f"{report['seeds']}; the exported weights are seed {report['exported_seed']} "
             f"({report['exported_seed_rule']}).", "",
             "| seed | val accuracy | best val accuracy | test accuracy | train s |",
             "|---|---|---|---|---|"]
    for r in report["per_seed"]:
        lines.append(f"| {r['seed']} | {_pct(r['val_accuracy'])} | "
                     f"{_pct(r['best_val_accuracy'])} | {_pct(r['test_accuracy'])} | "
                     f"{r['train_time_s']:.1f} |")
    lines += ["", f"Mean and {int(100 * report['confidence'])}% t-interval over "
              f"{len(report['seeds'])} seed(s) (n/a: fewer than 2 seeds):", "",
              "| metric | mean | CI low | CI high | std |", "|---|---|---|---|---|"]
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {_num(name, s['mean'])} | {_num(name, s['ci_low'])} | "
                     f"{_num(name, s['ci_high'])} | {_num(name, s['std'])} |")
    return "\n".join(lines)


def retrain(spec: Any, data: Any, train: Mapping[str, Any], seeds: Sequence[int],
            epochs: int, objectives: Sequence[tuple[str, str]], costs: Mapping[str, float],
            on_seed: Callable[[SeedRun], None] | None = None) -> Retrained:
    """Train ``spec`` on ``data`` (a loaded DatasetBundle) once per seed, in this process.

    ``train``: the study's training settings (``epochs`` and ``seed`` are replaced). Only the
    first seed's model is kept (it is the one exported). The test split is evaluated for every
    seed.
    """
    from nas_attn.train import TrainConfig, train_spec

    if not seeds:
        raise ConfigError("--seeds", 0, "expected an integer >= 1")
    runs: list[SeedRun] = []
    first_model = None
    for seed in seeds:
        cfg = TrainConfig(**{**dict(train), "epochs": int(epochs), "seed": int(seed)})
        result = train_spec(spec, data, cfg, evaluate_test=True)
        run = SeedRun(int(seed), float(result.val_accuracy), float(result.best_val_accuracy),
                      None if result.test_accuracy is None else float(result.test_accuracy),
                      int(result.epochs_trained), float(result.train_time_s))
        runs.append(run)
        if first_model is None:
            first_model = result.model.to("cpu")
        del result
        if on_seed is not None:
            on_seed(run)
    return Retrained(runs, summarize(runs, objectives, costs), runs[0].seed, first_model)
