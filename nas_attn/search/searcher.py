"""A thin Ray Tune ``Searcher`` around an Optuna study, driven through ask/tell.

Why not Ray's ``OptunaSearch`` (measured with ray 2.60; docs/search.md): a NaN leaves the Optuna
trial RUNNING for ever, a result without the metric aborts the experiment, a trial stopped by
the scheduler is told COMPLETE with its partly trained values, and ``Tuner.restore`` after a
``kill -9`` duplicates trials. This searcher tells Optuna the truth instead (rules in
:mod:`nas_attn.search.outcome`), never tells NaN, and never raises into Ray.

Per proposal (``suggest``): ask Optuna, turn the trial into a spec (the ``propose`` callable:
space -> canonical spec -> hash -> cost), then

- over the cost budget -> told FAIL ``over_budget`` at once, no training, not counted;
- same spec hash already evaluated in this study -> told with the earlier result, user attrs
  ``reused=True`` and ``reused_from``; counted, not trained;
- same spec hash being trained right now -> parked until that trial ends, then told its result
  when it is reusable (COMPLETE, PRUNED, ``nonfinite``, ``missing_metric``), or else trained
  itself (``error``, ``oom``, ``orphaned`` may not happen again: never copied), however many
  trials are in flight;
- with ``promote`` on (``early_stopping.promote``): same spec hash stopped early at a rung ->
  handed to Ray as a *promoted* trial, ``resume_epoch`` = the epochs the stopped trial trained,
  user attrs ``promoted_from`` and ``resume_epoch``; it resumes that training (see
  :mod:`nas_attn.search.evaluators`) and is decided again only at later rungs. Once it ends,
  later duplicates reuse its outcome (the record that trained furthest wins, :func:`remember`);
- otherwise handed to Ray as a new trial.

It returns ``FINISHED`` once ``target`` counted trials have been issued, so a run ends with
exactly the requested number of finished trials.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from nas_attn.search.bookkeeping import TrialBookkeeping
from nas_attn.search.outcome import (
    ACCURACY,
    COMPLETE,
    FAIL,
    INTERMEDIATE,
    PRUNED,
    REUSABLE_FAILS,
    Objective,
    Outcome,
    fail,
    is_finite_number,
)
from nas_attn.search.ownership import ask_owned
from nas_attn.search.placement import PARK, PROMOTE, REUSE, Record, place, record_rank

log = logging.getLogger(__name__)

MAX_ASKS_PER_SUGGEST = 200
MAX_CONSECUTIVE_SKIPS = 500


@dataclass(frozen=True)
class Proposal:
    """What the driver knows about a proposed architecture before any training."""

    spec: Mapping[str, Any]
    spec_hash: str
    costs: Mapping[str, float] = field(default_factory=dict)
    violation: str | None = None  # why it is over budget, or None


Propose = Callable[[Any], Proposal]  # optuna.Trial -> Proposal


@dataclass
class Counts:
    finished: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    reused: int = 0
    skipped: int = 0  # over budget / invalid: told FAIL, not counted
    running: int = 0
    promoted: int = 0  # started as promotions of stopped architectures


def state_of(name: str) -> Any:
    from optuna.trial import TrialState

    return {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAIL: TrialState.FAIL}[name]


def is_counted(trial: Any) -> bool:
    """Whether a stored Optuna trial counts toward a run's requested number of trials."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state == TrialState.FAIL:
        return bool(trial.user_attrs.get("counts", False))
    return False


def reusable(trial: Any) -> bool:
    from optuna.trial import TrialState

    if "spec_hash" not in trial.user_attrs:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") in REUSABLE_FAILS


def record_of(trial: Any) -> Record:
    """The placement record of a stored Optuna trial (:mod:`nas_attn.search.placement`)."""
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED}.get(trial.state, FAIL)
    return Record(state, trial.user_attrs.get("epochs_trained"))


def remember(done: Any, spec_hash: str, trial: Any) -> None:
    """Keep ``trial`` as the record of ``spec_hash`` unless ``done`` holds one that got further
    (``done``: a dict, or the runner's shared table)."""
    current = done.get(spec_hash) if spec_hash in done else None
    if current is None or record_rank(record_of(trial)) > record_rank(record_of(current)):
        done[spec_hash] = trial


def evaluator_attrs(result: Mapping[str, Any]) -> dict[str, Any]:
    """The user attrs an evaluator's report carries (:data:`~nas_attn.search.trainable.
    USER_ATTRS_KEY`, a JSON object as a string); {} when there are none or they do not parse."""
    from nas_attn.search.trainable import USER_ATTRS_KEY

    raw = result.get(USER_ATTRS_KEY)
    if not isinstance(raw, str):
        return {}
    try:
        attrs = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("a trial reported user attrs that are not JSON: %.200s", raw)
        return {}
    return dict(attrs) if isinstance(attrs, dict) else {}


def outcome_of(trial: Any) -> Outcome:
    """The outcome a stored trial ended with (to reuse it for a duplicate architecture)."""
    from optuna.trial import TrialState

    keep = ("epochs_trained", "last_accuracy", "fail_reason", "fail_message", "final")
    attrs = {k: v for k, v in trial.user_attrs.items() if k in keep}
    if trial.state == TrialState.COMPLETE:
        return Outcome(COMPLETE, tuple(trial.values), attrs)
    if trial.state == TrialState.PRUNED:
        return Outcome(PRUNED, None, attrs)
    return Outcome(FAIL, None, attrs)


@dataclass
class _Pending:
    trial: Any  # optuna.Trial
    proposal: Proposal
    started: float
    last_result: Mapping[str, Any] | None = None
    resume_epoch: int = 0  # > 0: a promoted trial
    curve: dict[str, list[float]] = field(default_factory=dict)  # "<epoch>": [accuracy, cost]


class AskTellSearcher(TrialBookkeeping):
    """Ray Tune searcher that asks an Optuna study and tells it what really happened."""

    def __init__(self, study: Any, propose: Propose, objectives: Sequence[Objective],
                 epochs: int, target: int, run_id: str,
                 on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
                 promote: bool = False,
                 done_table: Callable[[dict[str, Any]], Any] | None = None,
                 fixed_params: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        super().__init__(on_event)
        self.fixed_params = fixed_params  # the next trial's fixed parameters (or None)
        self.promote = promote
        self.study = study
        self.propose = propose
        self.objectives = tuple(objectives)
        self.epochs = epochs
        self.target = target
        self.run_id = run_id
        self.counts = Counts()
        self.stop_reason: str | None = None
        self._consecutive_skips = 0
        self._in_flight: dict[str, str] = {}  # spec hash -> ray trial id
        self._parked: dict[str, list[tuple[Any, Proposal]]] = {}
        # parked duplicates whose original failed in a way not reused: trained next
        self._retry: list[tuple[Any, Proposal]] = []
        done: dict[str, Any] = {}  # spec hash -> FrozenTrial to reuse
        for t in study.get_trials(deepcopy=False):
            if reusable(t) and not t.user_attrs.get("reused"):
                remember(done, t.user_attrs["spec_hash"], t)
        # ``done_table`` wraps the table (the runner's view shared with other drivers)
        self._done: Any = done_table(done) if done_table is not None else done

    # -- Ray Searcher API ---------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | str | None:
        for _ in range(MAX_ASKS_PER_SUGGEST):
            if self.stop_reason:
                return Searcher.FINISHED
            if self._retry:  # a duplicate whose original failed in a way that may not last
                config = self._place(trial_id, *self._retry.pop(0))
                if config is not None:
                    return config
                continue
            if self.issued >= self.target:
                # parked duplicates may still need training (their original may fail): wait
                return None if self._parked else Searcher.FINISHED
            fixed = self.fixed_params() if self.fixed_params is not None else None
            trial = ask_owned(self.study, self.run_id, fixed_params=fixed)
            try:
                proposal = self.propose(trial)
            except Exception as e:  # an invalid spec from the space: record, never crash Ray
                self._tell(trial, fail("error", f"{type(e).__name__}: {e}", counts=False,
                                       stage="propose"))
                if self._skip():
                    return Searcher.FINISHED
                continue
            self._annotate(trial, proposal)
            if proposal.violation:
                self._tell(trial, fail("over_budget", proposal.violation, counts=False))
                if self._skip():
                    return Searcher.FINISHED
                continue
            self.issued += 1
            self._consecutive_skips = 0
            config = self._place(trial_id, trial, proposal)
            if config is not None:
                return config
        return None

    def _place(self, trial_id: str, trial: Any, proposal: Proposal) -> dict | None:
        """An issued proposal: reused (an earlier result), parked (its spec is being trained
        now) or handed to Ray (its config returned)."""
        earlier = self._done.get(proposal.spec_hash)
        where = place(None if earlier is None else record_of(earlier),
                      proposal.spec_hash in self._in_flight, self.promote, self.epochs)
        if where.action == REUSE:
            self._reuse(trial, earlier)
            return None
        if where.action == PARK:
            self._parked.setdefault(proposal.spec_hash, []).append((trial, proposal))
            return None
        resume = where.resume_epoch
        if where.action == PROMOTE:
            trial.set_user_attr("promoted_from", earlier.number)
            trial.set_user_attr("resume_epoch", resume)
            self.counts.promoted += 1
        self._pending[trial_id] = _Pending(trial, proposal, time.time(), resume_epoch=resume)
        self._in_flight[proposal.spec_hash] = trial_id
        self.counts.running += 1
        self._emit("start", {"number": trial.number, "spec_hash": proposal.spec_hash,
                             "resume_epoch": resume})
        config = {
            "optuna_number": trial.number,
            "spec_hash": proposal.spec_hash,
            "spec": json.dumps(dict(proposal.spec), sort_keys=True),
            "costs": dict(proposal.costs),
        }
        if resume:
            config["resume_epoch"] = resume
        return config

    def unfinished(self) -> bool:
        return bool(self._pending or self._retry) or not (self.issued >= self.target
                                                         or self.stop_reason)

    def flush(self, interrupted: bool = False) -> None:
        """As the base class; duplicates parked behind a trial that never ended are orphaned."""
        super().flush(interrupted)
        waiting = [t for trials in self._parked.values() for t, _ in trials]
        for trial in [*waiting, *(t for t, _ in self._retry)]:
            self._tell(trial, fail("orphaned", "interrupted before it finished", counts=False))
        self._parked.clear()
        self._retry.clear()

    def _record(self, p: _Pending, result: Mapping[str, Any]) -> None:
        p.last_result = dict(result)
        acc, epoch = result.get(ACCURACY), result.get("epoch")
        cost = next((result.get(o.name) for o in self.objectives if o.name != ACCURACY), None)
        if is_finite_number(acc) and is_finite_number(epoch):
            p.curve[str(int(epoch))] = [float(acc), float(cost) if is_finite_number(cost) else None]

    def _costs(self, p: _Pending) -> Mapping[str, float]:
        return p.proposal.costs

    # -- internals ----------------------------------------------------------------------------

    def _skip(self) -> bool:
        """Count a proposal that was told FAIL without training; True when the search must stop."""
        self.counts.skipped += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            self.stop_reason = (f"{self._consecutive_skips} proposals in a row were over the cost "
                                "budget or invalid; loosen the study's constraints")
            return True
        return False

    def _annotate(self, trial: Any, proposal: Proposal) -> None:
        trial.set_user_attr("run_id", self.run_id)
        trial.set_user_attr("spec_hash", proposal.spec_hash)
        trial.set_user_attr("spec", json.dumps(dict(proposal.spec), sort_keys=True))
        for k, v in proposal.costs.items():
            trial.set_user_attr(k, float(v))

    def _reuse(self, trial: Any, earlier: Any) -> None:
        out = outcome_of(earlier)
        attrs = {**out.attrs, "reused": True, "reused_from": earlier.number, "counts": True}
        self._tell(trial, Outcome(out.state, out.values, attrs))
        self.counts.reused += 1
        self._count(out.state)
        self._emit("finish", {"number": trial.number, "state": out.state, "reused": True})

    def _finish(self, p: _Pending, out: Outcome) -> None:
        h = p.proposal.spec_hash
        self._in_flight.pop(h, None)
        self.counts.running -= 1
        attrs = dict(out.attrs)
        attrs.setdefault("counts", True)
        attrs["train_seconds"] = round(time.time() - p.started, 3)
        if p.curve:  # per-epoch values, the format of the Optuna pruner (read by the dashboard)
            attrs[INTERMEDIATE] = {**self._earlier_curve(h, p), **p.curve}
        if p.last_result:
            for k in ("images_per_s", "train_loss", "val_loss", "gpu_peak_mb"):
                v = p.last_result.get(k)
                if is_finite_number(v):
                    attrs[k] = float(v)
            attrs.update(evaluator_attrs(p.last_result))
        out = Outcome(out.state, out.values, attrs)
        frozen = self._tell(p.trial, out)
        self._count(out.state)
        self._emit("finish", {"number": p.trial.number, "state": out.state,
                              "values": out.values, "reason": attrs.get("fail_reason")})
        if frozen is not None and reusable(frozen):
            remember(self._done, h, frozen)
        parked = self._parked.pop(h, [])
        if frozen is not None and reusable(frozen):
            for trial, _ in parked:
                self._reuse(trial, frozen)
        else:  # a failure that may not last (error, oom, ...): the duplicates are trained
            self._retry.extend(parked)

    def _earlier_curve(self, h: str, p: _Pending) -> dict[str, Any]:
        """A promoted trial's curve starts with the epochs of the trial it resumed."""
        if not p.resume_epoch:
            return {}
        earlier = self._done.get(h) if h in self._done else None
        curve = earlier.user_attrs.get(INTERMEDIATE) if earlier is not None else None
        return {k: v for k, v in (curve or {}).items() if int(k) <= p.resume_epoch}

    def _count(self, state: str) -> None:
        self.counts.finished += 1
        if state == COMPLETE:
            self.counts.complete += 1
        elif state == PRUNED:
            self.counts.pruned += 1
        else:
            self.counts.failed += 1

    def _tell(self, trial: Any, out: Outcome) -> Any:
        for k, v in out.attrs.items():
            trial.set_user_attr(k, v)
        try:
            if out.state == COMPLETE:
                return self.study.tell(trial, list(out.values or ()))
            return self.study.tell(trial, state=state_of(out.state))
        except Exception:  # never let a sampler or storage hiccup abort the search
            log.exception("could not tell Optuna trial %s", trial.number)
            try:
                return self.study._storage.get_trial(trial._trial_id)
            except Exception:
                return None
