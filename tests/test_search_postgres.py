"""Several drivers share one Optuna study in a real PostgreSQL server (scripts/setup.d/20-postgres.sh).

Three ``nas-attn search`` processes run at the same time against one study, each with its own
run folder and local Ray runtime. Checked: every run ends with exactly its requested finished
trials, the study's total is their sum, nothing is left RUNNING, an architecture is trained
twice only when two drivers raced on it (the second was proposed before the first finished),
and the password never reaches a run folder.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.slow]

PORT = os.environ.get("NAS_ATTN_PG_PORT", "55432")
PASSWORD = "nasattn"
URL = f"postgresql://nasattn:{PASSWORD}@127.0.0.1:{PORT}/nas_attn_test"
DRIVERS = 3
TRIALS = 4


@pytest.fixture
def study_name():
    """A fresh study name; the study is deleted afterwards so reruns start clean."""
    import optuna

    from nas_attn.search.storage import open_storage

    try:
        storage = open_storage(URL)
    except Exception as e:  # the server is part of the test setup: fail, do not skip
        pytest.fail(f"cannot open PostgreSQL at 127.0.0.1:{PORT} ({e}); "
                    "run: bash scripts/setup.d/20-postgres.sh")
    name = f"pg-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas_attn", *args]


def _search_together(study: Path, url: str, outs: list[Path]) -> None:
    """``nas-attn search`` drivers started at the same moment, one per run folder in ``outs``;
    each must exit 0 with exactly TRIALS finished trials."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("NAS_ATTN_STORAGE", None)
    procs = [subprocess.Popen(_cli("search", str(study), "--storage", url, "--trials",
                                   str(TRIALS), "--out", str(out), "--num-cpus", "1", "--quiet"),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for out in outs]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=420)[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
        assert f"finished {TRIALS}/{TRIALS}" in log, log[-3000:]


def test_drivers_started_together_on_a_fresh_postgres_database(tmp_path: Path,
                                                               fresh_pg_url: str):
    """Three drivers, a database without Optuna's tables (on main one or two died creating the
    schema): all exit 0, the study holds 3 x TRIALS counted trials, nothing RUNNING."""
    import optuna
    from optuna.trial import TrialState

    from nas_attn.search.searcher import is_counted
    from nas_attn.search.storage import open_storage

    study = tmp_path / "shared.yaml"
    study.write_text("name: shared\nsynthetic: {choices: 10, epochs: 1}\n"
                     "search: {sampler: random, seed: 0, max_concurrent: 1}\n")
    outs = [tmp_path / f"run{i}" for i in range(DRIVERS)]
    _search_together(study, fresh_pg_url, outs)
    trials = optuna.load_study(study_name="shared", storage=open_storage(fresh_pg_url)
                               ).get_trials(deepcopy=False)
    assert sum(is_counted(t) for t in trials) == DRIVERS * TRIALS
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for out in outs:
        assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_concurrent_drivers_share_one_postgres_study(tmp_path: Path, study_name: str,
                                                     monkeypatch: pytest.MonkeyPatch):
    import optuna
    from optuna.trial import TrialState

    import nas_attn
    from nas_attn.errors import ConfigError
    from nas_attn.search.searcher import is_counted
    from nas_attn.search.storage import open_storage

    study = tmp_path / "shared.yaml"
    # 10 architectures for 12 finished trials: drivers must meet on the same specs
    study.write_text(f"name: {study_name}\n"
                     "synthetic: {choices: 10, epochs: 2, epoch_seconds: 0.3}\n"
                     "search: {sampler: random, seed: 0, max_concurrent: 1}\n")
    outs = [tmp_path / f"run{i}" for i in range(DRIVERS)]
    _search_together(study, URL, outs)

    st = optuna.load_study(study_name=study_name, storage=open_storage(URL))
    trials = st.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    run_ids = [json.loads((o / "run.json").read_text())["run_id"] for o in outs]
    assert len(set(run_ids)) == DRIVERS
    for rid in run_ids:
        assert sum(is_counted(t) for t in trials if t.user_attrs.get("run_id") == rid) == TRIALS
    assert sum(is_counted(t) for t in trials) == DRIVERS * TRIALS

    # trained (not reused) twice only when the second was asked before the first was told
    trained: dict[str, list] = {}
    for t in trials:
        if is_counted(t) and not t.user_attrs.get("reused"):
            trained.setdefault(t.user_attrs["spec_hash"], []).append(t)
    assert len(trained) <= 10
    for group in trained.values():
        group.sort(key=lambda t: t.datetime_start)
        for earlier, later in itertools.pairwise(group):
            assert later.user_attrs["run_id"] != earlier.user_attrs["run_id"]
            assert later.datetime_start <= earlier.datetime_complete, (
                f"trial {later.number} retrained spec of trial {earlier.number} after it ended")
    reused = [t for t in trials if t.user_attrs.get("reused")]
    assert reused, "12 trials over 10 architectures and no reuse at all"

    # the password never reaches a run folder; run.json keeps a redacted URL
    for out in outs:
        info = json.loads((out / "run.json").read_text())
        assert info["storage"] == f"postgresql://nasattn:***@127.0.0.1:{PORT}/nas_attn_test"
        assert not info["storage_in_run_dir"]
        assert not (out / "study.db").exists()
        for f in out.rglob("*"):
            if f.is_file():
                assert f":{PASSWORD}@".encode() not in f.read_bytes(), f

    monkeypatch.delenv("NAS_ATTN_STORAGE", raising=False)
    with pytest.raises(ConfigError, match="NAS_ATTN_STORAGE"):
        nas_attn.load_run(outs[0]).study  # noqa: B018 - the password is not in the folder
    monkeypatch.setenv("NAS_ATTN_STORAGE", URL)
    df = nas_attn.load_run(outs[0]).trials
    assert len(df) == len(trials) and df["run_id"].nunique() == DRIVERS
