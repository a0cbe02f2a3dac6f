"""Live progress of a search (rich), and the closing summary.

Shows finished/requested, running, pruned, failed, reused, promoted, best accuracy, Pareto-front
size, hypervolume and elapsed time with an ETA. The front, the normalised hypervolume and its
fixed reference point are the run's (:mod:`nas_attn.objectives`): the same numbers
``load_run``, the dashboard and ``nas-attn export`` show. The reference point is recorded in
the study the first time it can be computed and printed with the closing line. ``quiet`` shows
nothing (for scripts).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from nas_attn.objectives import (
    ACCURACY,
    COMPLETE,
    Entry,
    entries_of_trials,
    reference_text,
    study_reference,
    summarize_front,
)


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, study: Any, setup: Any, requested: int, already: int, quiet: bool,
                 console: Any = None, orphans: int = 0) -> None:
        self.quiet = quiet
        self.requested = requested
        self.already = already
        self.orphans = orphans
        self.study = study
        self.objectives = tuple(setup.objectives)
        self.limits = dict(getattr(setup, "hv_reference", {}) or {})
        self.acc_index = next((i for i, o in enumerate(self.objectives)
                               if o.name == ACCURACY), None)
        self.entries: dict[int, Entry] = {e.number: e for e in entries_of_trials(
            study.get_trials(deepcopy=False)) if e.state == COMPLETE}
        self.hashes: dict[int, str] = {}  # trial number -> spec hash, from "start" events
        self.reference = study_reference(study, self.objectives, self.limits)
        self.searcher: Any = None
        self.started = time.time()
        self.console = console
        self._live: Any = None

    def attach(self, searcher: Any) -> None:
        self.searcher = searcher
        self._refresh()

    def event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "start" and data.get("spec_hash"):
            self.hashes[int(data["number"])] = str(data["spec_hash"])
        if kind == "finish" and data.get("state") == COMPLETE and data.get("values"):
            n = int(data["number"])
            self.entries[n] = Entry(n, COMPLETE, tuple(data["values"]), self.hashes.get(n))
            if self.reference is None:
                self.reference = study_reference(self.study, self.objectives, self.limits)
        self._refresh()

    def front(self) -> tuple[tuple[int, ...], float | None, float | None]:
        """``(front trial numbers, normalised hypervolume, best accuracy)`` so far."""
        done = list(self.entries.values())
        summary = summarize_front(done, self.objectives, self.reference)
        best = None
        if self.acc_index is not None:
            accs = [e.values[self.acc_index] for e in done if e.values and not e.reused]
            best = max(accs) if accs else None
        return summary.numbers, summary.hypervolume, best

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
        front, hv, best = self.front()
        if best is not None:
            parts.append(f"best acc {best:.4f}")
        parts.append(f"front {len(front)}")
        if hv is not None and front:
            parts.append(f"HV {hv:.4f}")
        elapsed = time.time() - self.started
        done_here = c.finished if c else 0
        eta = ""
        if done_here:
            eta = f", ETA {_fmt_s(elapsed / done_here * max(0, self.requested - finished))}"
        parts.append(f"{_fmt_s(elapsed)} elapsed{eta}")
        return " | ".join(parts)

    def reference_text(self) -> str:
        text = reference_text(self.objectives, self.reference)
        return f"HV reference: {text}" if text else ""

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
