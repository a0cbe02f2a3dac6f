"""``nas-attn export RUN_DIR``: bundles from a real search run (real Ray, real tiny training).

One module-scoped run: 3 trials of the tiny ResNet on cluttered digits (16 x 16, 256 training
images, 1 epoch), whose COMPLETE trials keep their final weights as checkpoints. The export
tests read that run (copies of it where a test changes the folder).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_attn.cli import main
from nas_attn.errors import ConfigError

STUDY = """\
name: export-cli
space:
  name: export-cli
  backbone: tiny
  stages:
    default:
      attention:
        none:
        se: {rd_ratio: [0.25]}
        eca: {kernel_size: [3]}
      position: [post_bn]
      blocks: [last]
data: {name: cluttered-digits, image_size: 16, distractors: 1, train_size: 256, val_size: 128,
       test_size: 128}
train: {epochs: 1, batch_size: 64, lr: 0.05, threads: 1}
early_stopping: {enabled: false}
search: {trials: 3, sampler: random, seed: 0, max_concurrent: 2, cpus_per_trial: 1}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from nas_attn.search.from_study import setup_from_study_file
    from nas_attn.search.runner import run_search

    root = tmp_path_factory.mktemp("export-run")
    (root / "study.yaml").write_text(STUDY)
    setup = setup_from_study_file(root / "study.yaml")
    s = run_search(setup, out=root / "run", quiet=True, num_cpus=2)
    assert (s.status, s.finished, s.complete) == ("finished", 3, 3)
    return root / "run"


def _copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("ray", "exports"))
    return dest


def _listing(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _export(*args: str) -> int:
    return main(["export", *map(str, args), "--quiet"])


def _card(bundle: Path) -> dict:
    return json.loads((bundle / "card.json").read_text())


def _outputs_agree(bundle: Path, reference: torch.nn.Module) -> None:
    """PyTorch (``reference``), the reloaded bundle and onnxruntime give the same logits."""
    import onnxruntime as ort

    import nas_attn

    card = _card(bundle)
    shape = card["input"]["shape"][1:]
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    reloaded = nas_attn.load(bundle)
    with torch.no_grad():
        ref = reference.eval()(x)
        again = reloaded(x)
    assert torch.equal(ref, again)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(["logits"], {"input": x.numpy()})[0]
    # the bundle's own criterion: max|onnx - torch| <= 1e-4 + 1e-3 * max|torch|
    np.testing.assert_allclose(onnx_out, ref.numpy(), rtol=0,
                               atol=1e-4 + 1e-3 * float(ref.abs().max()))


def _checkpoint_model(run_dir: Path, row) -> torch.nn.Module:
    import nas_attn
    from nas_attn.search.trainable import checkpoint_path

    return nas_attn.load(checkpoint_path(run_dir, row["spec_hash"], 0),
                         spec=json.loads(row["spec"]))


# -- the search keeps checkpoints -------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_complete_trials_keep_their_final_weights(run_dir):
    import nas_attn
    from nas_attn.data import load_dataset
    from nas_attn.search.trainable import checkpoint_path
    from nas_attn.train import evaluate
    from nas_attn.yamlio import load_yaml

    run = nas_attn.load_run(run_dir)
    df = run.trials
    data = load_dataset(load_yaml(run_dir / "study.yaml")["data"])
    normalize = data.normalizer("cpu")
    complete = df[df["state"] == "COMPLETE"]
    assert len(complete) == 3
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == sorted({checkpoint_path(run_dir, h, 0).name for h in complete["spec_hash"]})
    for _, row in complete.iterrows():
        model = _checkpoint_model(run_dir, row)
        acc, _ = evaluate(model, data.val, normalize, 512, torch.device("cpu"))
        assert acc == pytest.approx(row["val_accuracy"], abs=1e-12)  # the trial's own weights


# -- exporting from checkpoints ---------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_export_knee_from_checkpoint(run_dir):
    import nas_attn
    from nas_attn.export.picks import select

    run = nas_attn.load_run(run_dir)
    knee = select(run.trials, ["knee"], run.objectives)[0]
    assert _export(run_dir, "--pick", "knee", "-o", "knee") == 0
    bundle = run_dir / "exports" / "knee"
    card = _card(bundle)
    row = run.trials.set_index("number").loc[knee.number]
    assert card["trial"]["number"] == knee.number
    assert card["spec_hash"] == row["spec_hash"]
    assert card["training"]["weights"] == "search checkpoint"
    assert card["front"]["pick"] == "knee" and card["front"]["on_front"] is True
    assert card["objectives"]["val_accuracy"] == pytest.approx(row["val_accuracy"])
    assert card["objectives"]["flops"] == pytest.approx(row["flops"])
    assert card["seed"] == 0 and card["dataset"]["name"] == "cluttered-digits"
    assert card["input"]["shape"] == ["batch", 3, 16, 16]
    _outputs_agree(bundle, _checkpoint_model(run_dir, {"spec_hash": row["spec_hash"],
                                                       "spec": row["spec"]}))
    assert not [p for p in os.listdir(run_dir / "exports") if p.startswith(".")]


@pytest.mark.ray
@pytest.mark.slow
def test_export_front_writes_one_bundle_per_front_trial(run_dir):
    import nas_attn

    run = nas_attn.load_run(run_dir)
    front = set(int(n) for n in run.front()["number"])
    assert _export(run_dir, "--pick", "front", "-o", "front") == 0
    bundles = sorted((run_dir / "exports" / "front").iterdir())
    assert {b.name for b in bundles} == {f"trial-{n}" for n in front}
    trials = run.trials.set_index("number")
    for b in bundles:
        card = _card(b)
        n = card["trial"]["number"]
        assert card["front"]["on_front"] and card["front"]["front_size"] == len(front)
        assert f'nas_attn.load("{b.name}")' in (b / "LOADING.md").read_text()
        row = trials.loc[n]
        _outputs_agree(b, _checkpoint_model(run_dir, {"spec_hash": row["spec_hash"],
                                                      "spec": row["spec"]}))


# -- retraining -------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_retrain_two_seeds_records_mean_and_ci(run_dir):
    import nas_attn

    run = nas_attn.load_run(run_dir)
    assert _export(run_dir, "--pick", "min-flops", "--retrain", "--epochs", "1",
                   "--seeds", "2") == 0
    [bundle] = [p for p in (run_dir / "exports").iterdir() if "retrain" in p.name]
    card = _card(bundle)
    number = card["trial"]["number"]
    assert bundle.name == f"trial-{number}-retrain-e1x2"
    rep = card["extra"]["retrain"]
    assert rep["seeds"] == [0, 1] and rep["exported_seed"] == 0 and rep["epochs"] == 1
    accs = [r["val_accuracy"] for r in rep["per_seed"]]
    s = rep["summary"]["val_accuracy"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(sum(accs) / 2)
    half = 12.706204736174707 * np.std(accs, ddof=1) / math.sqrt(2)  # t(0.975, 1)
    assert s["ci_low"] == pytest.approx(s["mean"] - half)
    assert s["ci_high"] == pytest.approx(s["mean"] + half)
    assert rep["summary"]["test_accuracy"]["n"] == 2
    flops = rep["summary"]["flops"]
    assert flops["ci_low"] == flops["ci_high"] == flops["mean"] == card["objectives"]["flops"]
    assert card["objectives"]["val_accuracy"] == accs[0]  # the exported (first) seed
    assert card["training"]["weights"].startswith("retrained")
    md = (bundle / "MODEL_CARD.md").read_text()
    assert "| seed | val accuracy |" in md and "t-interval" in md
    # seed 0 with the search's settings reproduces the search trial on this machine
    row = run.trials.set_index("number").loc[number]
    assert accs[0] == pytest.approx(row["val_accuracy"], abs=1e-12)


@pytest.mark.ray
@pytest.mark.slow
def test_missing_checkpoint_retrains_with_the_run_settings(run_dir, tmp_path):
    import nas_attn

    copy = _copy_run(run_dir, tmp_path / "run")
    shutil.rmtree(copy / "checkpoints")
    run = nas_attn.load_run(copy)
    row = run.trials.sort_values("number").iloc[0]
    n = int(row["number"])
    assert _export(copy, "--pick", f"trial={n}") == 0
    bundle = copy / "exports" / f"trial-{n}"
    card = _card(bundle)
    assert "no checkpoint" in card["training"]["weights"]
    assert card["objectives"]["val_accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-12)
    model = nas_attn.load(bundle)
    _outputs_agree(bundle, model)


# -- errors: exit 2, nothing left behind ------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    ([], "give at least one pick"),
    (["--pick", "trial=999"], "no trial number 999"),
    (["--pick", "flops<=1"], "no COMPLETE trial has that few FLOPs"),
    (["--pick", "best"], "unknown pick"),
    (["--pick", "knee", "-o", "../escaped"], "escapes the output folder"),
    (["--pick", "knee", "-o", "/tmp/elsewhere"], "escapes the output folder"),
    (["--pick", "front", "-o", "../escaped"], "escapes the output folder"),
    (["--pick", "knee", "--seeds", "2"], "only with --retrain"),
    (["--pick", "knee", "--retrain", "--epochs", "0"], "--epochs"),
])
def test_bad_picks_and_outputs_exit_2_and_write_nothing(run_dir, tmp_path, capsys, args,
                                                        message):
    copy = _copy_run(run_dir, tmp_path / "run")
    before = _listing(copy)
    assert _export(copy, *args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert _listing(copy) == before
    assert not (tmp_path / "escaped").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_existing_output_needs_force(run_dir, tmp_path, capsys):
    copy = _copy_run(run_dir, tmp_path / "run")
    assert _export(copy, "--pick", "knee", "-o", "mine") == 0
    before = {p: p.read_bytes() for p in (copy / "exports" / "mine").iterdir()}
    assert _export(copy, "--pick", "knee", "-o", "mine") == 2
    assert "already exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (copy / "exports" / "mine").iterdir()} == before
    (copy / "exports" / "notes").mkdir()
    (copy / "exports" / "notes" / "keep.txt").write_text("mine")
    assert _export(copy, "--pick", "knee", "-o", "notes", "--force") == 2  # not a bundle
    assert (copy / "exports" / "notes" / "keep.txt").read_text() == "mine"
    assert _export(copy, "--pick", "knee", "-o", "mine", "--force") == 0
    assert sorted(os.listdir(copy / "exports")) == ["mine", "notes"]


@pytest.mark.ray
@pytest.mark.slow
def test_unknown_incomplete_and_empty_runs_exit_2(run_dir, tmp_path, capsys):
    import pandas as pd

    assert _export(tmp_path / "nope", "--pick", "knee") == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert _export(tmp_path / "plain", "--pick", "knee") == 2
    assert "not a nas-attn run folder" in capsys.readouterr().err

    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(run_dir / "run.json", half / "run.json")
    assert _export(half, "--pick", "knee") == 2
    assert "incomplete run folder" in capsys.readouterr().err
    shutil.copy(run_dir / "study.yaml", half / "study.yaml")
    assert _export(half, "--pick", "knee") == 2  # no study.db, no trials.csv
    assert "incomplete run folder" in capsys.readouterr().err
    assert sorted(os.listdir(half)) == ["run.json", "study.yaml"]  # no storage created

    # every trial pruned: the front is empty (the table comes from trials.csv)
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("run.json", "study.yaml"):
        shutil.copy(run_dir / name, empty / name)
    df = pd.read_csv(run_dir / "trials.csv")
    df["state"] = "PRUNED"
    df.to_csv(empty / "trials.csv", index=False)
    before = _listing(empty)
    assert _export(empty, "--pick", "front") == 2
    assert "no COMPLETE trial" in capsys.readouterr().err
    assert _listing(empty) == before


@pytest.mark.ray
@pytest.mark.slow
def test_failure_on_a_later_pick_leaves_nothing(run_dir, tmp_path, capsys):
    """The first bundle is written, the second pick's checkpoint is corrupt: nothing stays."""
    import nas_attn
    from nas_attn.search.trainable import checkpoint_path

    copy = _copy_run(run_dir, tmp_path / "run")
    run = nas_attn.load_run(copy)
    numbers = sorted(int(n) for n in run.trials["number"])
    hashes = dict(zip(run.trials["number"], run.trials["spec_hash"], strict=True))
    checkpoint_path(copy, hashes[numbers[1]], 0).write_bytes(b"not safetensors")
    before = _listing(copy)
    assert _export(copy, "--pick", f"trial={numbers[0]}", "--pick", f"trial={numbers[1]}") == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert _listing(copy) == before
    assert not (copy / "exports").exists()


def test_export_from_run_refuses_a_synthetic_run(tmp_path):
    from nas_attn.export.from_run import export_from_run

    (tmp_path / "run.json").write_text(json.dumps({
        "study_name": "s", "objectives": [["val_accuracy", "maximize"], ["flops", "minimize"]]}))
    (tmp_path / "study.yaml").write_text("name: s\nsynthetic: {choices: 4, epochs: 1}\n")
    with pytest.raises(ConfigError, match="synthetic run"):
        export_from_run(tmp_path, ["knee"])
    assert sorted(os.listdir(tmp_path)) == ["run.json", "study.yaml"]


# -- pieces without Ray -----------------------------------------------------------------------


def test_evaluator_keeps_a_checkpoint_only_when_asked(tmp_path):
    from nas_attn.arch import spec_hash
    from nas_attn.export.from_run import read_checkpoint
    from nas_attn.search.evaluators import train_and_report
    from nas_attn.search.trainable import TRIAL_KEY

    spec = {"backbone": "tiny", "num_classes": 10, "in_chans": 3}
    h = spec_hash(spec)
    settings = {
        "data": {"name": "cluttered-digits", "image_size": 16, "train_size": 64,
                 "val_size": 32, "test_size": 32},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1, "seed": 3},
    }
    reports: list[dict] = []
    off = {**settings, "keep_checkpoints": False,
           TRIAL_KEY: {"spec_hash": h, "checkpoint_dir": str(tmp_path / "off")}}
    train_and_report(spec, off, reports.append)
    assert len(reports) == 1 and not (tmp_path / "off").exists()
    on = {**settings, TRIAL_KEY: {"spec_hash": h, "checkpoint_dir": str(tmp_path / "on")}}
    train_and_report(spec, on, reports.append)
    path = tmp_path / "on" / f"{h}-s3.safetensors"
    assert os.listdir(tmp_path / "on") == [path.name]  # no temporary file left
    state = read_checkpoint(path, h)
    assert state and all(t.device.type == "cpu" for t in state.values())
    with pytest.raises(ConfigError, match="not the checkpoint of spec"):
        read_checkpoint(path, "0" * 16)


def test_summary_is_a_t_interval_and_costs_have_zero_width():
    from nas_attn.export.retrain import SeedRun, render_notes, summarize

    runs = [SeedRun(0, 0.5, 0.6, 0.4, 2, 1.0), SeedRun(1, 0.7, 0.7, 0.6, 2, 1.0),
            SeedRun(2, 0.6, 0.6, 0.5, 2, 1.0)]
    objectives = [("val_accuracy", "maximize"), ("flops", "minimize")]
    s = summarize(runs, objectives, {"flops": 1e6})
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert s["val_accuracy"]["mean"] == pytest.approx(0.6)
    assert s["val_accuracy"]["ci_low"] == pytest.approx(0.6 - half)
    assert s["val_accuracy"]["ci_high"] == pytest.approx(0.6 + half)
    assert s["test_accuracy"]["mean"] == pytest.approx(0.5)
    assert s["flops"] == {"mean": 1e6, "ci_low": 1e6, "ci_high": 1e6, "n": 3, "std": 0.0}
    one = summarize(runs[:1], objectives, {"flops": 1e6})
    assert one["val_accuracy"]["ci_low"] is None and one["val_accuracy"]["std"] is None
    report = {"seeds": [0], "exported_seed": 0, "exported_seed_rule": "first", "epochs": 2,
              "confidence": 0.95, "per_seed": [runs[0].to_dict()], "summary": one}
    json.dumps(report, allow_nan=False)  # card-safe: no NaN
    assert "n/a" in render_notes(report)


def test_study_keep_checkpoints_key():
    from nas_attn.search.study import SearchSettings

    assert SearchSettings().keep_checkpoints is True
    assert SearchSettings(keep_checkpoints=False).to_dict()["keep_checkpoints"] is False
    with pytest.raises(ConfigError, match=r"search\.keep_checkpoints"):
        SearchSettings(keep_checkpoints="yes")


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_with_a_latency_table_puts_both_latencies_on_the_card(run_dir, tmp_path):
    """The run's study names a latency table (added to its resolved study.yaml here, a table
    made by hand for this machine): the card states the table's prediction for the exported
    spec and the measured latency of its model.onnx."""
    import yaml

    import nas_attn
    from nas_attn.arch import canonicalize
    from nas_attn.cost.cells import spec_cells
    from nas_attn.cost.latency_table import LatencyTable
    from nas_attn.cost.timing import fingerprint

    run = _copy_run(run_dir, tmp_path / "run")
    specs = [canonicalize(json.loads(s)) for s in nas_attn.load_run(run).trials["spec"]]
    cells = {c.key: {"desc": dict(c.desc), "median_ms": 0.2, "q1_ms": 0.2, "q3_ms": 0.2,
                     "repeats": 1} for s in specs for c in spec_cells(s, (3, 16, 16))}
    settings = {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "batch": 1,
                "input_size": [3, 16, 16], "warmup": 1, "repeats": 5}
    table = LatencyTable(settings, fingerprint("onnxruntime", "cpu", 1), cells)
    table.save(tmp_path / "t.json")
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["latency"] = {"table": str(tmp_path / "t.json"), "missing": "refuse"}
    (run / "study.yaml").write_text(yaml.safe_dump(study))
    assert _export(run, "--pick", "knee", "-o", "knee") == 0
    card = _card(run / "exports" / "knee")
    lat = card["latency"]
    assert lat["predicted_ms"] == pytest.approx(table.predict(canonicalize(card["spec"])))
    assert lat["measured_ms"] > 0 and lat["same_device"] is True
    assert lat["table"] == str(tmp_path / "t.json")
