"""Many drivers, one study (issue 19): drivers started together on a fresh database all open
it, and a driver never takes another live driver's trial as an orphan.

The PostgreSQL tests create a database of their own (``CREATE DATABASE`` with a unique name,
dropped afterwards) on the server the test setup starts (scripts/setup.d/20-postgres.sh), so
every one begins without Optuna's tables. The light drivers are separate Python processes that
open the storage and the study through nas-attn and ask/tell synthetic trials without Ray (8
Ray runtimes would not fit the CI machine); one test starts three real ``nas-attn search``
processes on a fresh database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PORT = os.environ.get("NAS_ATTN_PG_PORT", "55432")
SERVER = f"postgresql://nasattn:nasattn@127.0.0.1:{PORT}"
ADMIN_DB = "nas_attn_test"
TRIALS = 3

# one light driver: wait for the start signal, open storage and study, ask/tell TRIALS trials
DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nas_attn.search import storage as st
    from nas_attn.search.runner import open_study
    from nas_attn.search.setup import synthetic_setup
    from nas_attn.search.synthetic import SyntheticProblem, quality

    url, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    setup = synthetic_setup(SyntheticProblem(choices=10, epochs=1), name)
    while not go.exists():
        time.sleep(0.01)
    study = open_study(st.open_storage(url), setup, sampler=None)
    for _ in range(n):
        trial = study.ask()
        p = setup.propose(trial)
        study.tell(trial, [quality(p.spec["x"]), p.costs["flops"]])
""")


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (no Optuna tables); dropped afterwards."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(f"{SERVER}/{ADMIN_DB}".replace(
        "postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT",
        poolclass=sqlalchemy.pool.NullPool)
    name = f"nasattn_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # the server is part of the test setup: fail, do not skip
        pytest.fail(f"cannot create a database at 127.0.0.1:{PORT} ({e}); "
                    "run: bash scripts/setup.d/20-postgres.sh")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _start_light_drivers(tmp_path: Path, url: str, name: str, n: int) -> list[str]:
    """Start ``n`` light drivers at the same moment; wait; return their output (all rc 0)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    import nas_attn

    here = str(Path(nas_attn.__file__).resolve().parents[1])  # the nas_attn this test imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(script), url, name, str(TRIALS), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(n)]
    time.sleep(3.0)  # every process has imported optuna and waits for the signal
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


@pytest.mark.postgres
@pytest.mark.ray
@pytest.mark.slow
def test_search_drivers_started_together_on_a_fresh_postgres_database(tmp_path, fresh_pg_url):
    """Three real ``nas-attn search`` drivers, an empty database: all exit 0, 3 x 3 trials."""
    import optuna
    from optuna.trial import TrialState

    from nas_attn.search.searcher import is_counted
    from nas_attn.search.storage import open_storage

    study = tmp_path / "shared.yaml"
    study.write_text("name: shared\nsynthetic: {choices: 10, epochs: 1}\n"
                     "search: {sampler: random, seed: 0, max_concurrent: 1}\n")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("NAS_ATTN_STORAGE", None)
    outs = [tmp_path / f"run{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-m", "nas_attn", "search", str(study),
                               "--storage", fresh_pg_url, "--trials", str(TRIALS), "--out",
                               str(out), "--num-cpus", "1", "--quiet"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for out in outs]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=300)[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    st = optuna.load_study(study_name="shared", storage=open_storage(fresh_pg_url))
    trials = st.get_trials(deepcopy=False)
    assert sum(is_counted(t) for t in trials) == 3 * TRIALS
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for out in outs:
        info = json.loads((out / "run.json").read_text())
        assert info["status"] == "finished"
