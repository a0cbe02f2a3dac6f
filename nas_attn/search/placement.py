"""Where an issued proposal goes, given the earlier trial of its architecture (pure).

The searcher (:class:`nas_attn.search.searcher.AskTellSearcher`) and the tabular benchmark's
replay (``benchmarks/tabular/attnbench/replay.py``) both decide with these functions, so the
replay's claim to reuse and promote as a search does holds by construction:

- the architecture was evaluated before -> ``REUSE`` its outcome (no training), unless
- ``promote`` is on and the earlier trial was stopped early at a rung (PRUNED after
  ``0 < epochs_trained < max_epochs``) -> ``PROMOTE``: resume that training after its epochs;
- the architecture is being trained right now -> ``PARK`` until that trial ends;
- otherwise -> ``TRAIN`` a new trial.

Of several records of one architecture, the one that got furthest is kept (:func:`record_rank`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nas_attn.search.outcome import COMPLETE, PRUNED

REUSE = "reuse"
PARK = "park"
PROMOTE = "promote"
TRAIN = "train"


@dataclass(frozen=True)
class Record:
    """What a later duplicate needs to know of the earlier trial of its architecture."""

    state: str  # COMPLETE, PRUNED or FAIL (a failure that may be reused)
    epochs_trained: int | float | None = None


@dataclass(frozen=True)
class Placement:
    action: str  # REUSE, PARK, PROMOTE or TRAIN
    resume_epoch: int = 0  # > 0 only for PROMOTE: the epochs the earlier trial trained


def resume_epoch(earlier: Record | None, promote: bool, max_epochs: int) -> int:
    """The epoch a re-proposed architecture resumes after: > 0 only with ``promote`` on and an
    earlier trial stopped early at a rung (PRUNED); 0 otherwise (reuse or train)."""
    if not promote or earlier is None or earlier.state != PRUNED:
        return 0
    epochs = earlier.epochs_trained
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 < epochs < max_epochs:
        return 0
    return epochs


def place(earlier: Record | None, in_flight: bool, promote: bool, max_epochs: int) -> Placement:
    """The decision for one issued proposal (see the module doc)."""
    resume = resume_epoch(earlier, promote, max_epochs)
    if earlier is not None and not resume:
        return Placement(REUSE)
    if in_flight:
        return Placement(PARK)
    if resume:
        return Placement(PROMOTE, resume)
    return Placement(TRAIN)


def record_rank(record: Record) -> tuple[int, int]:
    """How far a record got, to pick the one a duplicate reuses: COMPLETE first, then PRUNED or
    failed by the epochs they trained (a promotion trains further)."""
    if record.state == COMPLETE:
        return (2, 0)
    epochs = record.epochs_trained
    ok = isinstance(epochs, int | float) and not isinstance(epochs, bool)
    return (1, int(epochs) if ok else 0)
