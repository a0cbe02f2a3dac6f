"""Who owns a trial, from the moment it is asked, and which trials are orphans.

A driver's trials carry its run id (user attr ``run_id``). :func:`ask_owned` creates the trial
with that attr in the same insert as the trial itself, so no other driver ever sees a RUNNING
trial of this driver without an owner (``study.ask()`` followed by ``set_user_attr`` left a
window in which a second driver took the fresh trial for its own orphan).

Liveness of an owner is the run folder's driver lock (:mod:`nas_attn.search.run_lock`): one
live driver per run folder, hence per run id. :func:`reconcile` runs while this driver holds
its run's lock, so a RUNNING trial with this run id belongs to a driver that is gone: an
orphan. Trials of other runs are left to their own driver or their own ``nas-attn resume``,
and trials without a run id (created by something else than a nas-attn driver, e.g. a user's
``enqueue_trial``) are never taken.

Why not Optuna's heartbeat (``heartbeat_interval`` / ``fail_stale_trials``): it is per trial
and made for ``Study.optimize`` (``Study.ask`` warns when it is on), its stale-trial query is
private, and the runner's trials live in Ray workers for their whole training, so the driver
would need a thread beating for every trial in flight. The run lock already proves that a run's
previous driver is gone, without clocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUN_ID = "run_id"


def ask_owned(study: Any, run_id: str, attrs: Mapping[str, Any] | None = None,
              fixed_params: Mapping[str, Any] | None = None) -> Any:
    """``study.ask()`` for the driver of ``run_id``: a new RUNNING trial whose user attrs
    (``run_id`` and ``attrs``) are written in the same transaction as the trial.
    ``fixed_params``: the values its ``suggest_*`` calls return (what ``enqueue_trial`` fixes;
    the one-shot pipeline's confirmations)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    template = create_trial(state=TrialState.RUNNING,
                            user_attrs={**dict(attrs or {}), RUN_ID: run_id},
                            system_attrs={"fixed_params": dict(fixed_params)}
                            if fixed_params else None)
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    study._thread_local.cached_all_trials = None  # as Study.ask: the sampler sees the new trial
    return optuna.Trial(study, trial_id)


def is_orphan(trial: Any, run_id: str) -> bool:
    """Whether an unfinished stored trial is an orphan of the run ``run_id`` (pure): its owner
    is this run, whose previous driver is gone (the caller holds the run's lock)."""
    return trial.user_attrs.get(RUN_ID) == run_id


def reconcile(study: Any, run_id: str) -> int:
    """Mark this run's RUNNING trials FAIL ``orphaned`` (their driver is gone); returns how many.
    Call it only while holding the run's driver lock."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    n = 0
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if not is_orphan(t, run_id):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", "orphaned")
            storage.set_trial_user_attr(t._trial_id, "counts", False)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # it ended meanwhile: not an orphan after all
            continue
        n += 1
    return n
