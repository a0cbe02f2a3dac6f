"""Promotion (``early_stopping.promote``): a stopped architecture proposed again resumes its
training after the rung it was stopped at. The rule (rungs at or below the resume epoch are
passed), the real evaluator's state files, and a real search from a study file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas_attn.errors import ConfigError
from nas_attn.search.pruning import CONTINUE, STOP, HalvingConfig, ParetoHalving

SPEC = {"backbone": "tiny", "num_classes": 10, "in_chans": 3,
        "backbone_args": {"width": 8, "blocks": 1}}
SETTINGS = {
    "data": {"name": "cluttered-digits", "image_size": 16, "train_size": 96, "val_size": 32,
             "test_size": 32},
    "train": {"epochs": 4, "batch_size": 32, "threads": 1, "seed": 5},
    "keep_checkpoints": False,
}


class _Stopped(Exception):
    """Stands for the scheduler's STOP (Ray ends the trainable at that report)."""


def test_a_promoted_trial_is_decided_only_at_later_rungs():
    cfg = HalvingConfig(max_epochs=9, eta=3, grace_epochs=1, min_trials_at_rung=1)  # rungs 1, 3
    h = ParetoHalving(cfg)
    assert h.report("good", 1, 0.9, 1.0) == CONTINUE
    assert h.report("bad", 1, 0.1, 2.0) == STOP
    # "bad" promoted: a new trial resuming after epoch 1 passes rung 1 (its row stays there)
    assert h.report("bad-promoted", 2, 0.05, 2.0, start_epoch=1) == CONTINUE
    assert [row[0] for row in h.rung_table[1]] == ["good", "bad"]
    assert h.report("good", 3, 0.95, 1.0) == CONTINUE
    assert h.report("bad-promoted", 3, 0.2, 2.0, start_epoch=1) == STOP  # rung 3 decides
    assert h.report("late", 4, 0.99, 0.5, start_epoch=3) == CONTINUE  # past every rung
    assert "late" not in {row[0] for rows in h.rung_table.values() for row in rows}
    with pytest.raises(ConfigError, match="start_epoch"):
        h.report("x", 1, 0.5, 1.0, start_epoch=-1)


def _run(settings: dict, trial: dict, stop_after: int | None = None) -> list[dict]:
    from nas_attn.search.evaluators import train_and_report
    from nas_attn.search.trainable import TRIAL_KEY

    reports: list[dict] = []
    epoch = [int(trial.get("resume_epoch") or 0)]

    def report(metrics):
        epoch[0] += 1
        reports.append({"epoch": epoch[0], **metrics})
        if stop_after is not None and epoch[0] >= stop_after:
            raise _Stopped

    try:
        train_and_report(SPEC, {**settings, TRIAL_KEY: trial}, report)
    except _Stopped:
        pass
    return reports


def _curve(reports: list[dict]) -> list[tuple]:
    return [(r["epoch"], r["val_accuracy"], r["train_loss"]) for r in reports]


def test_the_evaluator_keeps_the_rung_state_and_a_promotion_resumes_it(tmp_path):
    from nas_attn.arch import spec_hash
    from nas_attn.search.trainable import state_name

    h = spec_hash(SPEC)
    straight = _run(SETTINGS, {"spec_hash": h})
    states = tmp_path / "states"
    trial = {"spec_hash": h, "state_dir": str(states), "save_state_at": [1, 3]}
    first = _run(SETTINGS, trial, stop_after=1)  # stopped at rung 1
    path = states / state_name(h, 5)
    assert _curve(first) == _curve(straight[:1]) and path.is_file()
    assert os.listdir(states) == [path.name]  # no temporary file left

    resumed = _run(SETTINGS, {**trial, "resume_epoch": 1})
    assert _curve(resumed) == _curve(straight[1:])  # epochs 2-4, as if never stopped
    assert not path.exists()  # trained in full: the state is no longer needed

    # no state file (a worker on another node): the first epoch is retrained, not reported
    again = _run(SETTINGS, {**trial, "resume_epoch": 1})
    assert _curve(again) == _curve(straight[1:])
    # a state of another epoch is not resumed from either
    _run(SETTINGS, trial, stop_after=3)
    assert _run(SETTINGS, {**trial, "resume_epoch": 1}) and not path.exists()


def test_reporting_past_the_budget_fails_the_trial():
    """An evaluator that ignores ``resume_epoch`` would report epochs past the budget."""
    from nas_attn.errors import TrialError
    from nas_attn.search.trainable import run_trial

    config = {"spec": json.dumps({"x": 1, "fault": None}), "spec_hash": "a" * 16,
              "costs": {"flops": 2000.0}, "resume_epoch": 3}
    settings = {"evaluator": f"{__name__}:_ignores_resume", "epochs": 3,
                "checkpoint_dir": None, "evaluate": {"epochs": 3}}
    with pytest.raises(TrialError, match="reported epoch 4 of 3"):
        run_trial(config, settings)


def _ignores_resume(spec: dict, settings: dict, report_epoch) -> None:
    for _ in range(int(settings["epochs"])):
        report_epoch({"val_accuracy": 0.5})


@pytest.mark.ray
@pytest.mark.slow
def test_a_real_search_promotes_with_real_training(tmp_path: Path):
    """A study file with ``promote: true``: real training, real Ray; a promoted trial ends with
    the curve of its first part followed by the resumed epochs, and no state file is left for
    an architecture that trained in full."""
    import nas_attn

    study = tmp_path / "promote.yaml"
    study.write_text(
        "name: promote\n"
        "space: {backbone: tiny, backbone_args: {width: 8, blocks: 1},\n"
        "        stages: {0: {attention: {none: , se: }}, 1: {attention: {none: , eca: }}}}\n"
        "data: {name: cluttered-digits, image_size: 16, train_size: 96, val_size: 32,\n"
        "       test_size: 32}\n"
        "train: {epochs: 4, batch_size: 32, seed: 1}\n"
        "early_stopping: {eta: 2, grace_epochs: 1, min_trials_at_rung: 1, promote: true}\n"
        "search: {trials: 14, sampler: random, seed: 3, max_concurrent: 1}\n")
    out = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "nas_attn", "search", str(study), "--out",
                           str(out), "--num-cpus", "1", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    trials = {t.number: t for t in nas_attn.load_run(out).study.trials}
    promoted = [t for t in trials.values() if "promoted_from" in t.user_attrs]
    assert promoted, "14 trials over 4 architectures and no promotion"
    for t in promoted:
        earlier = trials[t.user_attrs["promoted_from"]]
        first = earlier.user_attrs["intermediate"]
        assert {k: t.user_attrs["intermediate"][k] for k in first} == first
        assert t.user_attrs["epochs_trained"] > t.user_attrs["resume_epoch"]
    complete = {t.user_attrs["spec_hash"] for t in trials.values() if t.state.name == "COMPLETE"}
    left = {p.name.split("-s")[0] for p in (out / "states").glob("*.state.pt")}
    assert not left & complete
