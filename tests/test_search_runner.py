"""End-to-end searches through real Ray and a real Optuna SQLite storage (synthetic trials)."""

from __future__ import annotations

import pytest

from nas_attn.errors import ConfigError
from nas_attn.search.runner import run_search
from nas_attn.search.setup import SearchOptions, synthetic_setup
from nas_attn.search.synthetic import SyntheticProblem

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_search_records_every_failure_and_builds_the_front_from_complete(tmp_path):
    import nas_attn

    faults = {1: "raise", 2: "nan", 3: "missing", 4: "oom"}
    problem = SyntheticProblem(choices=8, epochs=2, faults=faults, max_flops=7000)
    setup = synthetic_setup(problem, "faults", SearchOptions(
        trials=8, sampler="grid", seed=0, max_concurrent=2))
    s = run_search(setup, out=tmp_path / "run", quiet=True, num_cpus=2)
    assert (s.status, s.finished, s.requested) == ("finished", 8, 8)

    run = nas_attn.load_run(tmp_path / "run")
    df = run.trials
    assert "RUNNING" not in set(df["state"])
    counted = df[df["counts"] == True]  # noqa: E712
    assert len(counted) == 8
    reasons = dict(zip(df["choice.x"], df["fail_reason"], strict=True))
    assert {reasons[1], reasons[2], reasons[3], reasons[4]} == {
        "error", "nonfinite", "missing_metric", "oom"}
    assert reasons[1] == "error" and reasons[2] == "nonfinite"
    assert reasons[3] == "missing_metric" and reasons[4] == "oom"
    assert reasons[7] == "over_budget"  # flops 8000 > 7000: never trained, not counted
    assert not df[df["choice.x"] == 7]["counts"].any()
    complete = df[df["state"] == "COMPLETE"]
    assert set(complete["choice.x"]) == {0, 5, 6}  # every healthy choice trained in full
    assert complete["val_accuracy"].notna().all()
    assert df[df["state"] != "COMPLETE"]["val_accuracy"].isna().all()  # never NaN told
    front = run.front()
    assert len(front) >= 1 and set(front["number"]) <= set(complete["number"])
    assert run.best("max-accuracy")["val_accuracy"] == complete["val_accuracy"].max()
    assert run.best("min-flops")["flops"] == complete["flops"].min()
    assert run.best("knee")["number"] in set(front["number"])
    assert (tmp_path / "run" / "trials.csv").exists()
    assert (tmp_path / "run" / "study.yaml").exists()


def test_early_stopping_prunes_and_pruned_never_enter_the_front(tmp_path):
    import nas_attn

    problem = SyntheticProblem(choices=12, epochs=4)
    setup = synthetic_setup(problem, "prune", SearchOptions(
        trials=10, sampler="random", seed=1, max_concurrent=1),
        early_stopping={"enabled": True, "eta": 2, "grace_epochs": 1, "min_trials_at_rung": 1})
    s = run_search(setup, out=tmp_path / "run", quiet=True, num_cpus=2)
    assert s.finished == 10
    run = nas_attn.load_run(tmp_path / "run")
    df = run.trials
    pruned = df[df["state"] == "PRUNED"]
    assert len(pruned) >= 1
    assert (pruned["epochs_trained"] < 4).all() and pruned["last_accuracy"].notna().all()
    assert set(run.front()["number"]).isdisjoint(set(pruned["number"]))
    # per-epoch values are kept in the storage (the dashboard's learning curves read them)
    for t in run.study.trials:
        if t.user_attrs.get("reused"):
            continue
        curve = t.user_attrs.get("intermediate")
        assert curve is not None, (t.number, t.state, t.user_attrs)
        assert sorted(map(int, curve)) == list(range(1, t.user_attrs["epochs_trained"] + 1))
        last = curve[str(t.user_attrs["epochs_trained"])]
        acc = t.values[0] if t.state.name == "COMPLETE" else t.user_attrs["last_accuracy"]
        assert last[0] == acc and last[1] == t.user_attrs["flops"]
    # the runner records what a pruned-aware sampler needs (search.learn_from_pruned): it
    # sees each PRUNED trial at (the accuracy it was stopped at, its FLOPs)
    from optuna.trial import TrialState

    from nas_attn.search.pruned_view import _PrunedAsComplete

    seen = {t.number: t for t in _PrunedAsComplete(run.study).get_trials()}
    for t in run.study.trials:
        if t.state == TrialState.PRUNED:
            assert seen[t.number].state == TrialState.COMPLETE
            assert seen[t.number].values == [t.user_attrs["last_accuracy"], t.user_attrs["flops"]]


def test_promotion_resumes_a_stopped_architecture_when_it_is_proposed_again(tmp_path):
    """early_stopping.promote: a re-proposed PRUNED architecture trains on from its rung (new
    trial, ``promoted_from``), is decided only at later rungs, and no architecture pays for
    the same epoch twice; once one has trained in full, its duplicates reuse the full result."""
    from collections import defaultdict

    import nas_attn
    from nas_attn.search.synthetic import quality

    problem = SyntheticProblem(choices=6, epochs=4)
    setup = synthetic_setup(problem, "promote", SearchOptions(
        trials=30, sampler="random", seed=2, max_concurrent=1),
        early_stopping={"enabled": True, "eta": 2, "grace_epochs": 1, "min_trials_at_rung": 1,
                        "promote": True})
    s = run_search(setup, out=tmp_path / "run", quiet=True, num_cpus=2)
    assert s.finished == 30
    trials = sorted(nas_attn.load_run(tmp_path / "run").study.trials, key=lambda t: t.number)
    by_number = {t.number: t for t in trials}
    promoted = [t for t in trials if "promoted_from" in t.user_attrs]
    assert promoted, "30 trials over 6 architectures with stopping and no promotion at all"
    assert s.promoted == len(promoted)
    paid: dict[str, int] = defaultdict(int)
    for t in trials:
        a = t.user_attrs
        if a.get("reused") or "spec_hash" not in a:
            continue
        start = a.get("resume_epoch", 0)
        paid[a["spec_hash"]] += a["epochs_trained"] - start
        assert paid[a["spec_hash"]] <= 4, f"trial {t.number} paid for epochs twice"
        curve = a["intermediate"]
        assert sorted(map(int, curve)) == list(range(1, a["epochs_trained"] + 1))
        if start:
            earlier = by_number[a["promoted_from"]]
            assert earlier.state.name == "PRUNED" and start == earlier.user_attrs["epochs_trained"]
            assert earlier.user_attrs["spec_hash"] == a["spec_hash"]
            assert all(curve[k] == v for k, v in earlier.user_attrs["intermediate"].items())
        if t.state.name == "COMPLETE":
            x = int(t.params["x"])
            assert t.values[0] == pytest.approx(quality(x) * (1 - 0.5 ** 4))
    assert any(t.state.name == "COMPLETE" for t in promoted)
    # after an architecture trained in full, every later proposal of it reuses that result
    full: dict[str, int] = {}
    for t in trials:
        h = t.user_attrs.get("spec_hash")
        if h in full:
            assert t.user_attrs.get("reused") and t.state.name == "COMPLETE", t.number
        elif t.state.name == "COMPLETE":
            full[h] = t.number


def test_fingerprint_mismatch_refused_and_identical_rerun_continues(tmp_path):
    import json

    out = tmp_path / "run"
    opts = SearchOptions(trials=3, sampler="random", seed=0, max_concurrent=2)
    first = run_search(synthetic_setup(SyntheticProblem(choices=20, epochs=1), "same", opts),
                       out=out, quiet=True, num_cpus=2)
    assert first.finished == 3
    changed = synthetic_setup(SyntheticProblem(choices=20, epochs=2), "same", opts)
    with pytest.raises(ConfigError, match="different setup"):
        run_search(changed, out=out, quiet=True, num_cpus=2)
    assert json.loads((out / "run.json").read_text())["run_id"]  # run.json left intact
    again = run_search(synthetic_setup(SyntheticProblem(choices=20, epochs=1), "same", opts),
                       out=out, quiet=True, num_cpus=2)
    assert again.finished == 3
    import nas_attn

    df = nas_attn.load_run(out).trials
    assert df["counts"].sum() == 6 and df["run_id"].nunique() == 2


def test_duplicates_waiting_on_a_transient_failure_are_trained_through_ray(tmp_path):
    """One architecture that always fails with oom, two trials at a time: every trial is
    trained (on main five of six were told the copied failure, ``reused``)."""
    import nas_attn

    problem = SyntheticProblem(choices=1, epochs=1, faults={0: "oom"}, epoch_seconds=0.3)
    setup = synthetic_setup(problem, "transient", SearchOptions(
        trials=4, sampler="random", seed=0, max_concurrent=2))
    s = run_search(setup, out=tmp_path / "run", quiet=True, num_cpus=2)
    assert (s.status, s.finished, s.reused) == ("finished", 4, 0)
    df = nas_attn.load_run(tmp_path / "run").trials
    assert list(df["fail_reason"]) == ["oom"] * 4
    assert not df["reused"].fillna(False).astype(bool).any()
