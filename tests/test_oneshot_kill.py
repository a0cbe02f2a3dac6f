"""The one-shot pipeline end to end through Ray (docs/one-shot.md): kill -9 of a one-shot
search's whole process group while it trains the supernet, then ``nas-attn resume``: the
supernet's training goes on after its last kept epoch, and the run ends complete and
consistent (every pick confirmed once with both seeds, their mean the trial's value, the front
of the confirmed trials carrying their predictions, every proposal predicted once, nothing
RUNNING); a second resume trains and scores nothing."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from kill_helpers import cli, env, interrupt_when, start
from test_oneshot_search import STUDY as ONESHOT_STUDY  # the tiny space, recipe and search

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STUDY = {**copy.deepcopy(ONESHOT_STUDY), "name": "kill-oneshot",
         "data": {"name": "synthetic", "image_size": 16, "train_size": 512, "val_size": 64,
                  "test_size": 32},
         "oneshot": {"epochs": 3, "proposals": 4, "confirm": 2, "seeds": 2,
                     "calibration_batches": 1}}


def test_kill_9_while_the_supernet_trains_then_resume(tmp_path: Path,
                                                       without_session_plugins) -> None:
    import optuna

    import nas_attn

    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    run = tmp_path / "run"
    progress = run / "supernet" / "progress.pt"
    proc = start("search", str(tmp_path / "study.yaml"), "--out", str(run), "--num-cpus", "2",
                 "--quiet")
    interrupt_when(proc, progress.is_file, signal.SIGKILL, "the supernet's first epoch",
                   group=True, poll_s=0.02)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "supernet" / "supernet.json").exists()  # killed mid-training
    assert json.loads((run / "run.json").read_text())["oneshot"]["phase"] == "supernet"

    res = subprocess.run(cli("resume", str(run), "--num-cpus", "2", "--quiet"), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    meta = json.loads((run / "supernet" / "supernet.json").read_text())
    assert meta["resumed_after_epoch"] >= 1 and meta["epochs"] == 3  # not from epoch 0
    assert not progress.exists()

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["requested_trials"] == 2
    storage = f"sqlite:///{run / 'study.db'}"
    predicted = optuna.load_study(study_name="kill-oneshot:predicted", storage=storage).trials
    assert [t.state.name for t in predicted].count("COMPLETE") == 4 and len(predicted) == 4
    scored = [t.user_attrs["spec_hash"] for t in predicted if "score_ms" in t.user_attrs]
    assert len(scored) == len(set(scored))  # no architecture scored twice
    r = nas_attn.load_run(run)
    df = r.trials
    assert "RUNNING" not in set(df["state"]) and len(df) == 2
    assert sorted(df["spec_hash"]) == sorted(info["oneshot"]["picks"])
    for _, t in df.iterrows():  # confirmed once, with both seeds: the value is their mean
        assert t["state"] == "COMPLETE" and t["confirm_seeds"] == [0, 1]
        assert t["val_accuracy"] == pytest.approx(sum(t["seed_val_accuracy"]) / 2)
        attrs = r.study.trials[t["number"]].user_attrs
        assert 0 <= attrs["predicted_val_accuracy"] <= 1
        for seed in (0, 1):
            assert (run / "checkpoints" / f"{t['spec_hash']}-s{seed}.safetensors").is_file()
        assert attrs["predicted_flops"] == t["flops"]
        assert predicted[attrs["predicted_number"]].params == r.study.trials[t["number"]].params
    assert set(r.front()["number"]) <= set(df["number"]) and len(r.front()) >= 1
    from nas_attn.viz.dashboard import ONESHOT_ID, build, figures

    board = build(r.study, dict(r.info))
    assert board.oneshot.numbers == tuple(sorted(df["number"]))
    assert ONESHOT_ID in figures(board)

    from nas_attn.search import runner  # a finished run resumed again: nothing new, no Ray

    stamp = (run / "supernet" / "supernet.json").stat().st_mtime_ns
    s = runner.resume_run(run, quiet=True, num_cpus=2)
    assert s.status == "finished" and s.finished == 2
    assert len(optuna.load_study(study_name="kill-oneshot", storage=storage).trials) == 2
    assert len(optuna.load_study(study_name="kill-oneshot:predicted",
                                 storage=storage).trials) == 4
    assert (run / "supernet" / "supernet.json").stat().st_mtime_ns == stamp
