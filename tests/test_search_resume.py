"""kill -9 / Ctrl-C of the driver mid-search, then ``nas-attn resume``: the run ends with
exactly the requested number of finished trials, nothing RUNNING, nothing trained twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from kill_helpers import cli, env, interrupt_when, start

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STUDY = """\
name: interrupt
synthetic: {choices: 40, epochs: 3, epoch_seconds: 0.4}
search: {trials: 8, sampler: tpe, startup_trials: 3, seed: 3, max_concurrent: 2,
         cpus_per_trial: 1}
"""


def _finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(
                "select count(*) from trials where state in ('COMPLETE','PRUNED')").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _start_and_interrupt(tmp_path: Path, sig: int
                         ) -> tuple[Path, subprocess.Popen, bytes, dict]:
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    run = tmp_path / "run"
    proc = start("search", str(study), "--out", str(run), "--num-cpus", "2", "--quiet")
    out = interrupt_when(proc, lambda: _finished(run / "study.db") >= 2, sig,
                         "two finished trials")
    before = json.loads((run / "run.json").read_text())
    assert before["status"] in ("running", "interrupted")
    assert before["options"]["startup_trials"] == 3  # the resumed segments' TPE starts so
    res = subprocess.run(cli("resume", str(run), "--num-cpus", "2", "--quiet"), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return run, proc, out, before


def _check_exact(run: Path) -> None:
    import nas_attn

    r = nas_attn.load_run(run)
    df = r.trials
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert "RUNNING" not in set(df["state"])
    mine = df[df["run_id"] == r.info["run_id"]]
    assert int(mine["counts"].fillna(False).astype(bool).sum()) == 8
    trained = mine[(mine["state"].isin(["COMPLETE", "PRUNED"])) & (mine["reused"] != True)]  # noqa: E712
    assert trained["spec_hash"].is_unique  # no architecture trained twice
    orphans = df[df["fail_reason"] == "orphaned"]
    assert not orphans["counts"].fillna(False).astype(bool).any()


def test_kill_9_then_resume_is_exact(tmp_path):
    run, proc, _, _ = _start_and_interrupt(tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    _check_exact(run)


def test_sigint_then_resume_is_exact(tmp_path):
    run, proc, out, before = _start_and_interrupt(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, out.decode()[-3000:]
    assert before["status"] == "interrupted"
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    _check_exact(run)


def test_sigterm_then_resume_is_exact(tmp_path):
    """SIGTERM: run.json says ``interrupted`` (on main: ``finished``); the exit status is what
    Ray's own SIGTERM handlers leave (134 seen), never 0."""
    run, proc, out, before = _start_and_interrupt(tmp_path, signal.SIGTERM)
    assert proc.returncode != 0, out.decode()[-3000:]
    assert before["status"] == "interrupted", out.decode()[-3000:]
    _check_exact(run)


def test_resume_while_the_runs_own_driver_is_alive_is_refused(tmp_path):
    """``nas-attn resume RUN`` during the run's own search: refused naming the live driver's
    pid and host (exit 2), and the search ends exact (requested count, nothing twice)."""
    import socket

    study = tmp_path / "study.yaml"
    study.write_text(STUDY.replace("max_concurrent: 2", "max_concurrent: 1"))
    run = tmp_path / "run"
    proc = start("search", str(study), "--out", str(run), "--num-cpus", "1", "--quiet")
    try:
        deadline = time.time() + 180
        while _finished(run / "study.db") < 1:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.2)
        res = subprocess.run(cli("resume", str(run), "--num-cpus", "1", "--quiet"), env=env(),
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stdout[-3000:] + res.stderr[-3000:]
        assert f"pid {proc.pid} on host {socket.gethostname()}" in res.stderr
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-3000:]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _check_exact(run)
