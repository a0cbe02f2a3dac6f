"""The base class of every nas-attn Ray Tune searcher: what happens to a trial once handed out.

The search's :class:`~nas_attn.search.searcher.AskTellSearcher` and the ablation's
:class:`~nas_attn.ablation.run.JobSearcher` derive from it; the execution layer
(:mod:`nas_attn.search.execution`) drives either through its public methods only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.search import Searcher

from nas_attn.search.outcome import Objective, Outcome, classify, fail

log = logging.getLogger(__name__)


class TrialBookkeeping(Searcher):
    """What every nas-attn Ray searcher does with a trial it handed out: keep its results, tell
    Optuna the outcome when Ray completes it, wait for the failure reason the error relay of
    :mod:`nas_attn.search.execution` brings (``resolve_error``), record where it ran
    (``record_attrs``), and at the end of a Tuner run tell every trial still open (``flush``;
    ``unfinished`` says whether the run ended early). Subclasses fill ``self._pending`` (values
    with a ``trial`` and a ``last_result``) in ``suggest`` and implement ``_finish``; ``_emit``
    passes progress events to ``on_event``. Pickling keeps the run id only: the search state
    lives in the Optuna storage, and nas-attn never uses ``Tuner.restore``."""

    objectives: tuple[Objective, ...]
    epochs: int
    run_id: str

    def __init__(self, on_event: Callable[[str, Mapping[str, Any]], None] | None = None
                 ) -> None:
        super().__init__(metric=None, mode=None)
        self.on_event = on_event
        self.issued = 0
        self._pending: dict[str, Any] = {}  # ray trial id -> pending trial
        self._errors: dict[str, Any] = {}  # ray trial id -> pending, awaiting a reason

    # -- pickling: Ray pickles the searcher for Tuner.restore, which nas-attn never uses -----

    def __getstate__(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "detached": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as fh:
            json.dump({"run_id": self.run_id, "issued": self.issued,
                       "note": "the search state lives in the Optuna storage"}, fh)

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("nas-attn resumes from the Optuna storage "
                                  "(nas-attn resume)")

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return True

    # -- for the execution layer ----------------------------------------------------------------

    def unfinished(self) -> bool:
        """True when trials are still open after the Tuner ended (the run was cut short)."""
        return bool(self._pending)

    def record_attrs(self, trial_id: str, attrs: Mapping[str, Any]) -> None:
        """Set user attrs on the Optuna trial of a running Ray trial (bookkeeping only: a
        storage error is logged, never raised into Ray)."""
        p = self._pending.get(trial_id)
        if p is None:
            return
        try:
            for k, v in attrs.items():
                p.trial.set_user_attr(k, v)
        except Exception:
            log.debug("could not record %s on trial %s", sorted(attrs), trial_id)

    def _emit(self, kind: str, data: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a broken progress display never aborts the run
                log.exception("progress callback failed")

    def _finish(self, p: Any, out: Outcome) -> None:
        raise NotImplementedError

    def _costs(self, p: Any) -> Mapping[str, float]:
        return {}

    def _record(self, p: Any, result: Mapping[str, Any]) -> None:
        p.last_result = dict(result)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        p = self._pending.get(trial_id)
        if p is not None:
            self._record(p, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        p = self._pending.pop(trial_id, None)
        if p is None:
            return
        if result:  # a result that made the scheduler stop the trial arrives only here
            self._record(p, result)
        if error:  # the reason arrives through the runner's error relay right after this
            self._errors[trial_id] = p
            return
        self._finish(p, classify(p.last_result, self.objectives, self.epochs, self._costs(p)))

    def resolve_error(self, trial_id: str, reason: str, message: str) -> None:
        p = self._errors.pop(trial_id, None)
        if p is None:
            return
        epochs = int(p.last_result["epoch"]) if p.last_result and "epoch" in p.last_result else 0
        self._finish(p, fail(reason, message, epochs_trained=epochs, counts=True))

    def flush(self, interrupted: bool = False) -> None:
        """End of the Tuner run: tell every trial still open. Interrupted ones become FAIL
        ``orphaned`` (retrained on resume); others never reported back: ``error``."""
        for trial_id in list(self._errors):
            self.resolve_error(trial_id, "error", "the trial raised an error")
        for trial_id in list(self._pending):
            p = self._pending.pop(trial_id)
            if interrupted:
                self._finish(p, fail("orphaned", "interrupted before it finished", counts=False))
            else:
                self._finish(p, fail("error", "the trial never ended in Ray", counts=True))
