"""Live progress of a search (rich), and the closing summary.

Shows finished/requested, running, pruned, failed, reused, promoted, best accuracy, Pareto-front
size, hypervolume and elapsed time with an ETA. The front and hypervolume are over the study's
COMPLETE trials. The hypervolume is normalised (the fraction of the box between the reference
point and the ideal point that the front dominates, in [0, 1]) and uses a **fixed** reference
point, so it only grows as the search improves and is comparable between runs of the same study.
The reference: 0 for a maximised objective (accuracy), and for a minimised cost the space's
whole-network limit (``max_flops`` / ``max_params``; for the synthetic problem, the largest cost
of its space). A cost without a limit gets 2x the largest value known when the display starts
(or at its first COMPLETE trial), frozen from then on; the reference is printed with the closing
line. ``quiet`` shows nothing (for scripts).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any


def front_stats(points: list[tuple[float, ...]], directions: Sequence[str],
                reference: Sequence[float]) -> tuple[int, float | None]:
    """(front size, normalised hypervolume) of objective vectors (pure).

    The hypervolume is divided by the volume of the box between ``reference`` and the ideal
    point (1 for a maximised objective, i.e. accuracy; 0 for a minimised cost), so it is the
    fraction of that box the points dominate, in [0, 1]. Duplicate points count once.
    """
    if not points:
        return 0, None
    from nas_attn.pareto import hypervolume, pareto_front_mask

    unique = sorted(set(points))
    mask = pareto_front_mask(unique, list(directions))
    box = 1.0
    for r, d in zip(reference, directions, strict=True):
        box *= abs((1.0 if d == "maximize" else 0.0) - r) or 1.0
    hv = float(hypervolume(unique, list(reference), list(directions)))
    return int(mask.sum()), hv / box


def reference_point(names: Sequence[str], directions: Sequence[str],
                    limits: Mapping[str, float], points: list[tuple[float, ...]]
                    ) -> list[float] | None:
    """The fixed hypervolume reference (pure); None while a cost without a limit has no value
    to anchor on yet."""
    ref: list[float] = []
    for j, (name, d) in enumerate(zip(names, directions, strict=True)):
        if d == "maximize":
            ref.append(0.0)
        elif limits.get(name):
            ref.append(float(limits[name]))
        elif points:
            ref.append(2.0 * max(p[j] for p in points))
        else:
            return None
    return ref


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, study: Any, setup: Any, requested: int, already: int, quiet: bool,
                 console: Any = None, orphans: int = 0) -> None:
        from optuna.trial import TrialState

        self.quiet = quiet
        self.requested = requested
        self.already = already
        self.orphans = orphans
        self.directions = setup.directions
        self.names = [o.name for o in setup.objectives]
        self.limits = dict(getattr(setup, "hv_reference", {}) or {})
        self.acc_index = next((i for i, o in enumerate(setup.objectives)
                               if o.name == "val_accuracy"), None)
        self.points = [tuple(t.values) for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)) if not t.user_attrs.get("reused")]
        self.reference = reference_point(self.names, self.directions, self.limits, self.points)
        self.searcher: Any = None
        self.started = time.time()
        self.console = console
        self._live: Any = None

    def attach(self, searcher: Any) -> None:
        self.searcher = searcher
        self._refresh()

    def event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "finish" and data.get("state") == "COMPLETE" and data.get("values"):
            self.points.append(tuple(data["values"]))
            if self.reference is None:
                self.reference = reference_point(self.names, self.directions, self.limits,
                                                 self.points)
        self._refresh()

    def line(self) -> str:
        c = self.searcher.counts if self.searcher else None
        finished = self.already + (c.finished if c else 0)
        parts = [f"finished {finished}/{self.requested}"]
        if c:
            parts += [f"running {c.running}", f"pruned {c.pruned}", f"failed {c.failed}"]
            if c.reused:
                parts.append(f"reused {c.reused}")
            if c.promoted:
                parts.append(f"promoted {c.promoted}")
            if c.skipped:
                parts.append(f"over budget {c.skipped}")
        if self.acc_index is not None and self.points:
            parts.append(f"best acc {max(p[self.acc_index] for p in self.points):.4f}")
        size, hv = (0, None) if self.reference is None else front_stats(
            self.points, self.directions, self.reference)
        parts.append(f"front {size}")
        if hv is not None:
            parts.append(f"HV {hv:.4f}")
        elapsed = time.time() - self.started
        done_here = c.finished if c else 0
        eta = ""
        if done_here:
            eta = f", ETA {_fmt_s(elapsed / done_here * max(0, self.requested - finished))}"
        parts.append(f"{_fmt_s(elapsed)} elapsed{eta}")
        return " | ".join(parts)

    def reference_text(self) -> str:
        if self.reference is None:
            return ""
        return "HV reference: " + ", ".join(
            f"{n} {v:.4g}" for n, v in zip(self.names, self.reference, strict=True))

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.line())

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.console import Console
            from rich.live import Live

            if self.orphans:
                (self.console or Console()).print(
                    f"reconciled {self.orphans} orphaned trial(s) (retrained if proposed again)")
            self._live = Live(self.line(), console=self.console or Console(stderr=True),
                              refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.line())
            self._live.__exit__(*exc)
            console = self._live.console
            if not console.is_terminal:  # rich ends a non-terminal render without a newline
                console.file.write("\n")
            self._live = None
