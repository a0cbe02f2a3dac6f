"""Where an issued proposal goes (nas_attn/search/placement.py), and that the tabular replay
decides with the same rule as the searcher."""

from __future__ import annotations

import numpy as np
import pytest

from nas_attn.search.outcome import COMPLETE, FAIL, PRUNED
from nas_attn.search.placement import (
    PARK,
    PROMOTE,
    REUSE,
    TRAIN,
    Placement,
    Record,
    place,
    record_rank,
    resume_epoch,
)

EPOCHS = 10


@pytest.mark.parametrize(("earlier", "in_flight", "promote", "expected"), [
    (None, False, False, Placement(TRAIN)),
    (None, True, False, Placement(PARK)),
    (None, True, True, Placement(PARK)),
    (Record(COMPLETE), False, True, Placement(REUSE)),
    (Record(COMPLETE), True, True, Placement(REUSE)),  # a result beats waiting
    (Record(PRUNED, 3), False, False, Placement(REUSE)),  # promote off: PRUNED is reused
    (Record(PRUNED, 3), False, True, Placement(PROMOTE, 3)),
    (Record(PRUNED, 3), True, True, Placement(PARK)),  # its promotion is training now
    (Record(PRUNED, EPOCHS), False, True, Placement(REUSE)),  # nothing left to train
    (Record(PRUNED, 0), False, True, Placement(REUSE)),
    (Record(PRUNED, None), False, True, Placement(REUSE)),
    (Record(PRUNED, 3.0), False, True, Placement(REUSE)),  # not an epoch count
    (Record(PRUNED, True), False, True, Placement(REUSE)),
    (Record(FAIL, 3), False, True, Placement(REUSE)),  # a reusable failure is not promoted
])
def test_place(earlier, in_flight, promote, expected):
    assert place(earlier, in_flight, promote, EPOCHS) == expected
    if expected.action != PARK:  # a parked duplicate is placed again when its twin ends
        assert resume_epoch(earlier, promote, EPOCHS) == expected.resume_epoch


def test_record_rank_prefers_complete_then_epochs():
    ranked = sorted([Record(PRUNED, 3), Record(COMPLETE), Record(FAIL, None), Record(PRUNED, 9)],
                    key=record_rank)
    assert ranked == [Record(FAIL, None), Record(PRUNED, 3), Record(PRUNED, 9), Record(COMPLETE)]


def test_searcher_record_of_reads_stored_trials():
    import optuna
    from optuna.trial import TrialState

    from nas_attn.search.searcher import record_of

    study = optuna.create_study(directions=["maximize", "minimize"])
    t = study.ask()
    t.set_user_attr("epochs_trained", 4)
    study.tell(t, state=TrialState.PRUNED)
    u = study.ask()
    study.tell(u, [0.5, 1.0])
    pruned, complete = study.get_trials()
    assert record_of(pruned) == Record(PRUNED, 4)
    assert record_of(complete) == Record(COMPLETE, None)


def test_replay_decides_with_the_placement_rule(monkeypatch):
    """The replay's reuse comes from ``place``: with a rule that never reuses, the duplicates
    the sampler proposes cost epochs again."""
    from attnbench import replay as rp
    from attnbench.table import from_curves

    acc = np.tile(np.linspace(0.1, 0.9, 4)[:, None, None], (1, 1, 4))  # 4 archs, 1 seed
    params = [{"x": i} for i in range(4)]
    table = from_curves(acc, np.arange(4.0) + 1, np.ones(4, dtype=int), params, seeds=[0])
    method = rp.Method("random")
    normal = rp.replay_once(table, method, 24, rep=0)
    assert (normal.epochs[1:][np.isin(normal.archs[1:], normal.archs[:1])] == 0).all()
    repeats = len(normal.archs) - len(set(normal.archs.tolist()))
    assert repeats > 0  # 24 proposals over 4 architectures
    assert normal.consumed[-1] == 4 * len(set(normal.archs.tolist()))

    monkeypatch.setattr(rp, "place", lambda *a, **k: Placement(TRAIN))
    always = rp.replay_once(table, method, 24, rep=0)
    assert always.consumed[-1] == 4 * 24
