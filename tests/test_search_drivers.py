"""Many drivers, one study (issue 19): drivers started together on a fresh database all open
it, and a driver never takes another live driver's trial as an orphan.

The PostgreSQL tests create a database of their own (the ``fresh_pg_url`` fixture of
conftest.py) on the server the test setup starts, so every one begins without Optuna's tables. The light drivers are separate Python processes that
open the storage and the study through nas-attn and ask/tell synthetic trials without Ray (8
Ray runtimes would not fit the CI machine); tests/test_search_postgres.py starts three real
``nas-attn search`` processes on a fresh database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TRIALS = 3

# one light driver: say it is ready, wait for the start signal, open storage and study,
# ask/tell TRIALS trials
DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nas_attn.search import storage as st
    from nas_attn.search.runner import open_study
    from nas_attn.search.setup import synthetic_setup
    from nas_attn.search.synthetic import SyntheticProblem, quality

    url, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    setup = synthetic_setup(SyntheticProblem(choices=10, epochs=1), name)
    Path(sys.argv[5]).touch()  # imported: ready
    while not go.exists():
        time.sleep(0.01)
    study = open_study(st.open_storage(url), setup, sampler=None)
    for _ in range(n):
        trial = study.ask()
        p = setup.propose(trial)
        study.tell(trial, [quality(p.spec["x"]), p.costs["flops"]])
""")


def _start_light_drivers(tmp_path: Path, url: str, name: str, n: int) -> list[str]:
    """Start ``n`` light drivers at the same moment; wait; return their output (all rc 0)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    import nas_attn

    here = str(Path(nas_attn.__file__).resolve().parents[1])  # the nas_attn this test imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    ready = [tmp_path / f"ready{i}" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, str(script), url, name, str(TRIALS), str(go),
                               str(r)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):  # every driver imported, waiting for the signal
        assert all(p.poll() is None for p in procs), "a driver died before the start"
        assert time.monotonic() < deadline, "the drivers did not start in time"
        time.sleep(0.05)
    go.touch()
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=120)[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(p.returncode, log[-2000:]) for p, log in zip(procs, logs, strict=True)
              if p.returncode != 0]
    assert not failed, f"{len(failed)} of {n} drivers failed: {failed[0]}"
    return logs


def _check_totals(url: str, name: str, n: int) -> None:
    import optuna
    from optuna.trial import TrialState

    from nas_attn.search.storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == n * TRIALS
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n * TRIALS
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 8])
def test_drivers_started_together_on_a_fresh_postgres_database(tmp_path, fresh_pg_url, n):
    _start_light_drivers(tmp_path, fresh_pg_url, "fresh", n)
    _check_totals(fresh_pg_url, "fresh", n)


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 8])
def test_drivers_started_together_on_a_fresh_sqlite_file(tmp_path, n):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    _start_light_drivers(tmp_path, url, "fresh", n)
    _check_totals(url, "fresh", n)
