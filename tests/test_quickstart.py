"""The quickstart end to end, cut down to 3 trials (two at once, then one: a rung decision): the real CLI, the embedded dataset, real
training in Ray workers, early stopping on, then the run folder read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_cut_down_runs_end_to_end(tmp_path):
    import nas_attn
    from nas_attn.search.study import load_study

    study = load_study(ROOT / "studies" / "quickstart.yaml")
    epochs = int(study.train.epochs)
    run = tmp_path / "run"  # given relative to the working folder, as `make demo` does
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(ROOT / "studies" / "quickstart.yaml"),
         "--trials", "3", "--out", "run", "--num-cpus", "2"],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
        timeout=480, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "finished: 3/3 trials finished" in res.stdout, out[-3000:]
    for line in ("results:   run", "nas-attn dashboard run",
                 "nas-attn export run --pick knee", "nas_attn.load_run("):
        assert line in res.stdout, (line, res.stdout)

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["requested_trials"] == 3
    assert info["storage"].startswith("sqlite:///") and (run / "study.db").exists()
    for name in ("trials.csv", "study.yaml"):
        assert (run / name).exists(), name

    r = nas_attn.load_run(run)
    df = r.trials
    assert len(df) == 3 and df["counts"].astype(bool).all()
    assert set(df["state"]) <= {"COMPLETE", "PRUNED"}, df[["state", "fail_reason"]]
    complete, pruned = df[df["state"] == "COMPLETE"], df[df["state"] == "PRUNED"]
    assert len(complete) >= 1  # the first trials of a rung are never stopped
    assert (complete["epochs_trained"] == epochs).all()
    assert complete["val_accuracy"].between(0, 1).all()
    assert complete["val_accuracy"].max() > 0.2, "10 classes: chance is 0.1"
    from nas_attn.search.trainable import checkpoint_path

    for h in complete["spec_hash"]:  # COMPLETE trials keep their weights for export
        assert checkpoint_path(run, h, int(study.train.seed)).is_file(), h
    assert (pruned["epochs_trained"] < epochs).all() and pruned["val_accuracy"].isna().all()
    assert (df["flops"] > 0).all() and (df["params"] > 0).all()
    assert df.filter(like="choice.stage0.").shape[1] >= 1
    specs = [json.loads(s) for s in df["spec"]]
    assert all(s["backbone"] == "tiny" for s in specs)
    assert df["spec_hash"].notna().all() and df["train_seconds"].notna().any()

    front = r.front()
    assert 1 <= len(front) <= len(complete)
    assert set(front["number"]) <= set(complete["number"])
    assert r.best("knee")["number"] in set(front["number"])
    csv = pd.read_csv(run / "trials.csv")
    assert list(csv["number"]) == list(df["number"])


def test_one_trial_at_a_time_a_run_is_reproducible(tmp_path):
    """docs/search.md: with ``max_concurrent`` 1 a fresh run of a study repeats itself: the same
    proposals, the same rung decisions, the same accuracies (seeded sampler, seeded training)."""
    import yaml

    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["space"] = str(ROOT / "search_spaces" / "quickstart.yaml")
    data["data"].update(train_size=400, val_size=200, test_size=100)
    data["train"]["epochs"] = 4
    data["early_stopping"] = {"enabled": True, "eta": 2, "grace_epochs": 1}
    study = tmp_path / "small.yaml"
    study.write_text(yaml.safe_dump(data))
    cols = ["number", "state", "spec_hash", "val_accuracy", "last_accuracy", "epochs_trained"]
    tables = []
    for name in ("a", "b"):
        res = subprocess.run(
            [sys.executable, "-m", "nas_attn", "search", str(study), "--trials", "4",
             "--max-concurrent", "1", "--out", name, "--num-cpus", "2", "-q"],
            env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
            timeout=480, cwd=tmp_path)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        tables.append(pd.read_csv(tmp_path / name / "trials.csv")[cols])
    a, b = tables
    assert len(a) == 4 and a["spec_hash"].nunique() > 1
    pd.testing.assert_frame_equal(a, b)
