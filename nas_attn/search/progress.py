"""Live progress of a search (rich), and the closing summary.

Shows finished/requested, running, pruned, failed, reused, best accuracy, Pareto-front size,
hypervolume and elapsed time with an ETA. The front and hypervolume are over the study's
COMPLETE trials; the hypervolume's reference point is accuracy 0 (or the worst value of any
other maximised objective) and 1.1x the largest cost seen, so it grows as the search improves
but is only comparable within one display. ``quiet`` shows nothing (for scripts).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def front_stats(points: list[tuple[float, ...]], directions: list[str]
                ) -> tuple[int, float | None]:
    """(front size, hypervolume) of objective vectors (pure)."""
    if not points:
        return 0, None
    from nas_attn.pareto import hypervolume, pareto_front_mask

    mask = pareto_front_mask(points, directions)
    ref = []
    for j, d in enumerate(directions):
        col = [p[j] for p in points]
        if d == "maximize":
            ref.append(min(0.0, min(col)))
        else:
            ref.append(max(col) * 1.1 if max(col) > 0 else 1.0)
    return int(mask.sum()), float(hypervolume(points, ref, directions))


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
        self.acc_index = next((i for i, o in enumerate(setup.objectives)
                               if o.name == "val_accuracy"), None)
        self.points = [tuple(t.values) for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))]
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
        self._refresh()

    def line(self) -> str:
        c = self.searcher.counts if self.searcher else None
        finished = self.already + (c.finished if c else 0)
        parts = [f"finished {finished}/{self.requested}"]
        if c:
            parts += [f"running {c.running}", f"pruned {c.pruned}", f"failed {c.failed}"]
            if c.reused:
                parts.append(f"reused {c.reused}")
            if c.skipped:
                parts.append(f"over budget {c.skipped}")
        if self.acc_index is not None and self.points:
            parts.append(f"best acc {max(p[self.acc_index] for p in self.points):.4f}")
        size, hv = front_stats(self.points, self.directions)
        parts.append(f"front {size}")
        if hv is not None:
            parts.append(f"HV {hv:.4g}")
        elapsed = time.time() - self.started
        done_here = c.finished if c else 0
        eta = ""
        if done_here:
            eta = f", ETA {_fmt_s(elapsed / done_here * max(0, self.requested - finished))}"
        parts.append(f"{_fmt_s(elapsed)} elapsed{eta}")
        return " | ".join(parts)

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
            self._live = None
