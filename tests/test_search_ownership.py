"""Issue 19 without Ray: trial ownership between drivers, one live driver per run folder, what
run.json's status says, and duplicates of a transient failure (real Optuna storages)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas_attn.search import execution, runner
from nas_attn.search import storage as st
from nas_attn.search.outcome import Objective
from nas_attn.search.runner import open_study, reconcile
from nas_attn.search.searcher import AskTellSearcher, is_counted
from nas_attn.search.setup import SearchOptions, synthetic_setup
from nas_attn.search.synthetic import SyntheticProblem

OBJ = (Objective("val_accuracy", "maximize"), Objective("flops", "minimize"))


def _setup(name: str = "own", choices: int = 4, trials: int = 3):
    return synthetic_setup(SyntheticProblem(choices=choices, epochs=1), name,
                           SearchOptions(trials=trials, sampler="random", seed=0))


def test_a_second_driver_never_orphans_a_trial_another_driver_is_proposing(tmp_path):
    """The race of the issue, made deterministic: driver A has asked a trial and is still
    building its proposal when driver B starts and reconciles."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    setup = _setup()
    study_a = open_study(st.open_storage(url), setup, sampler=None)
    asked, release = threading.Event(), threading.Event()

    def slow_propose(trial):
        asked.set()
        assert release.wait(20)
        return setup.propose(trial)

    a = AskTellSearcher(study_a, slow_propose, OBJ, 1, target=1, run_id="run_a")
    got: dict = {}
    thread = threading.Thread(target=lambda: got.update(config=a.suggest("t1")))
    thread.start()
    try:
        assert asked.wait(20)
        study_b = open_study(st.open_storage(url), setup, sampler=None)
        assert reconcile(study_b, "run_b") == 0  # B takes nothing of A's
        (t,) = study_b.get_trials(deepcopy=False)
        assert t.state == TrialState.RUNNING and t.user_attrs["run_id"] == "run_a"
    finally:
        release.set()
        thread.join(20)
    assert isinstance(got["config"], dict)
    a.on_trial_complete("t1", {"epoch": 1, "val_accuracy": 0.5})
    (t,) = study_b.get_trials(deepcopy=False)
    assert t.state == TrialState.COMPLETE and "fail_reason" not in t.user_attrs
    assert t.user_attrs["run_id"] == "run_a"


def test_reconcile_takes_only_its_own_runs_unfinished_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    mine, other, unowned = study.ask(), study.ask(), study.ask()
    mine.set_user_attr("run_id", "me")
    other.set_user_attr("run_id", "someone")
    assert reconcile(study, "me") == 1
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[mine.number].state == TrialState.FAIL
    assert by_number[mine.number].user_attrs["fail_reason"] == "orphaned"
    assert not is_counted(by_number[mine.number])
    assert by_number[other.number].state == TrialState.RUNNING
    assert by_number[unowned.number].state == TrialState.RUNNING


def test_duplicates_of_a_transient_failure_are_trained_not_copied():
    """Two trials of one architecture in flight (max_concurrent 2): the first fails with oom,
    the waiting duplicate is trained itself, not told the copied failure."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    problem = SyntheticProblem(choices=1, epochs=1)  # every proposal is the same architecture
    s = AskTellSearcher(study, problem.propose, OBJ, 1, target=2, run_id="r")
    first = s.suggest("a")
    assert isinstance(first, dict)
    assert s.suggest("b") is None  # the duplicate waits for the first; the search goes on
    s.on_trial_complete("a", None, error=True)
    s.resolve_error("a", "oom", "out of memory")
    second = s.suggest("c")
    assert isinstance(second, dict), "the duplicate of an oom failure was not trained"
    assert second["optuna_number"] != first["optuna_number"]
    s.on_trial_complete("c", {"epoch": 1, "val_accuracy": 0.6})
    assert s.suggest("d") == "FINISHED"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert not [t.number for t in trials if t.user_attrs.get("reused")]
    assert sum(is_counted(t) for t in trials) == 2


def test_duplicates_of_a_reusable_result_are_still_reused():
    study = optuna.create_study(directions=["maximize", "minimize"])
    s = AskTellSearcher(study, SyntheticProblem(choices=1, epochs=1).propose, OBJ, 1,
                        target=2, run_id="r")
    assert isinstance(s.suggest("a"), dict)
    assert s.suggest("b") is None
    s.on_trial_complete("a", {"epoch": 1, "val_accuracy": float("nan")})  # nonfinite: reused
    assert s.suggest("c") == "FINISHED"
    trials = study.get_trials()
    assert [t.user_attrs.get("fail_reason") for t in trials] == ["nonfinite", "nonfinite"]
    assert trials[1].user_attrs["reused"] and trials[1].user_attrs["reused_from"] == 0


# -- run.json's status ---------------------------------------------------------------------


@pytest.fixture
def no_ray(monkeypatch):
    """The runner without Ray: ``_execute`` is replaced by each test."""
    monkeypatch.setattr(execution, "ray_runtime", lambda *a, **k: contextlib.nullcontext())


class _Searcher:
    stop_reason = None


def test_a_crashed_driver_records_its_run_as_failed(tmp_path, no_ray, monkeypatch):
    def crash(*a, **k):
        raise RuntimeError("storage went away")

    monkeypatch.setattr(runner, "_execute", crash)
    with pytest.raises(RuntimeError, match="storage went away"):
        runner.run_search(_setup(), out=tmp_path / "run", quiet=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["message"] == "RuntimeError: storage went away"


def test_a_run_short_of_its_trials_is_not_finished(tmp_path, no_ray, monkeypatch):
    monkeypatch.setattr(runner, "_execute", lambda *a, **k: (_Searcher(), False))
    s = runner.run_search(_setup(trials=3), out=tmp_path / "run", quiet=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (s.status, info["status"]) == ("failed", "failed")
    assert info["message"] == "ended with 0 of 3 requested trials counted"


def test_an_interrupted_run_says_so(tmp_path, no_ray, monkeypatch):
    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_execute", ctrl_c)
    s = runner.run_search(_setup(), out=tmp_path / "run", quiet=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (s.status, info["status"]) == ("interrupted", "interrupted")
    assert "message" not in info


def test_ended_status_is_finished_only_at_the_requested_count():
    from nas_attn.search.run_dir import ended_status

    assert ended_status(5, 5, False, None, None) == ("finished", "")
    assert ended_status(5, 2, False, None, None)[0] == "failed"
    assert ended_status(5, 5, False, None, ValueError("x")) == ("failed", "ValueError: x")
    assert ended_status(5, 2, True, None, None) == ("interrupted", "")
    assert ended_status(5, 2, False, "too many over budget", None) == (
        "stopped", "too many over budget")


# -- one live driver per run folder ------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from nas_attn.search.run_lock import hold
with hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(run_dir: Path) -> subprocess.Popen:
    import nas_attn

    here = str(Path(nas_attn.__file__).resolve().parents[1])
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": here})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_run_folder_has_one_live_driver_and_a_killed_ones_lock_is_taken_over(
        tmp_path, no_ray, monkeypatch):
    from nas_attn.search.run_lock import RunBusyError

    calls = []
    monkeypatch.setattr(runner, "_execute",
                        lambda *a, **k: (calls.append(1), (_Searcher(), False))[1])
    run = tmp_path / "run"
    runner.run_search(_setup(trials=1), out=run, quiet=True)
    before = (run / "run.json").read_text()
    p = _holder(run)
    try:
        host = socket.gethostname()
        with pytest.raises(RunBusyError, match=f"pid {p.pid} on host {host}"):
            runner.resume_run(run, quiet=True)
        with pytest.raises(RunBusyError, match=f"pid {p.pid}"):
            runner.run_search(_setup(trials=1), out=run, quiet=True)
        assert (run / "run.json").read_text() == before  # nothing written by the refused
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert len(calls) == 1
    runner.resume_run(run, quiet=True)  # the killed driver's lock is stale: taken over
    assert len(calls) == 2


def test_a_lock_is_released_when_its_driver_ends(tmp_path):
    from nas_attn.search.run_lock import hold, holder

    with hold(tmp_path) as me:
        assert holder(tmp_path) == me and me["pid"] == os.getpid()
    assert holder(tmp_path) == {}
    start = time.monotonic()
    with hold(tmp_path):
        pass
    assert time.monotonic() - start < 5


def test_a_storage_that_cannot_be_opened_leaves_no_run_folder(tmp_path):
    from nas_attn.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open the storage"):
        runner.run_search(_setup(), out=tmp_path / "run", quiet=True,
                          storage_url="postgresql://nobody:x@127.0.0.1:9/none")
    assert not (tmp_path / "run").exists()
