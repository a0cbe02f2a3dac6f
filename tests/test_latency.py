"""Latency tables: cells, table format and prediction, build (with resume), validate, profile,
the study's latency section, and the CLI's bad-input cases. Timings here use tiny repeat
counts: these tests check the machinery, the accuracy figures live in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas_attn.arch import build_model, canonicalize
from nas_attn.cli import main
from nas_attn.cost import profile
from nas_attn.cost.cells import cells_with_modules, spec_cells
from nas_attn.cost.latency_table import (
    LatencyTable,
    MissingCellsError,
    check_fingerprint,
    load_table,
)
from nas_attn.cost.timing import check_settings, fingerprint
from nas_attn.errors import ConfigError
from nas_attn.latency import build_table, stage_specs, validate_table
from nas_attn.latency.build import partial_path
from nas_attn.space import parse_space

ROOT = Path(__file__).resolve().parents[1]
SIZE = (3, 16, 16)
SPACE = {"name": "small", "backbone": "tiny", "input_size": list(SIZE),
         "stages": {1: {"attention": {"none": None, "se": None, "eca": None},
                        "position": ["post_bn", "post_add"], "blocks": ["all", "last"]},
                    2: {"conv": ["standard", "rfaconv"], "fusion": ["none", "sda"]}}}
FAST = {"runtime": "torch", "warmup": 0, "repeats": 2, "calibrate": 3}


def _spec(**stage1):
    return canonicalize({"backbone": "tiny", "num_classes": 10,
                         "stages": [None, stage1 or None, None]})


def test_cells_run_in_a_row_are_the_network():
    spec = canonicalize({"backbone": "tiny", "num_classes": 10, "stages": [
        None, {"attention": {"type": "se"}, "position": "post_add", "blocks": "last"},
        {"fusion": {"type": "sda"}, "conv": {"type": "rfaconv"}}]})
    parts = list(cells_with_modules(spec, SIZE, batch=2, device="cpu"))
    assert [c.desc["kind"] for c, _, _ in parts] == ["stem"] + ["block"] * 4 + ["stage", "head"]
    assert_parts_are_the_network(parts)


def assert_parts_are_the_network(parts) -> None:
    """The cells' modules run one after another (each fed its own input shape) compute what
    their network does: they all belong to one built network."""
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        y = x
        for cell, module, shape in parts:
            assert tuple(y.shape) == shape == tuple(cell.desc["input"])
            y = module(y)
        assert torch.equal(y, parts[0][1].net(x))


def test_a_cell_is_shared_by_every_spec_that_has_it():
    plain, se = spec_cells(_spec(), SIZE), spec_cells(
        _spec(attention={"type": "se"}, position="post_bn", blocks="last"), SIZE)
    differ = [i for i, (a, b) in enumerate(zip(plain, se, strict=True)) if a.key != b.key]
    assert differ == [4]  # stem, stage 0 blocks 0-1, stage 1 block 0 | block 1 | ...
    assert se[4].desc["holds"]["gates"]["post_bn"]["type"] == "se"
    assert spec_cells(_spec(), SIZE, batch=4)[0].key != plain[0].key  # the batch is part of it


def test_the_stage_walk_holds_every_cell_of_the_space():
    space = parse_space(SPACE)
    covered = {c.key for s in stage_specs(space) for c in spec_cells(s, SIZE)}
    rng = random.Random(0)
    drawn = [space.point(space.sample_params(rng)).spec for _ in range(40)]
    needed = {c.key for s in drawn if s is not None for c in spec_cells(s, SIZE)}
    assert needed and needed <= covered


def _table(**cells_ms):
    spec = _spec()
    cells = {c.key: {"desc": dict(c.desc), "median_ms": cells_ms.get(c.desc["kind"], 1.0),
                     "q1_ms": 0.9, "q3_ms": 1.1, "repeats": 3} for c in spec_cells(spec, SIZE)}
    settings = {"runtime": "torch", "device": "cpu", "threads": 1, "batch": 1,
                "input_size": list(SIZE), "warmup": 0, "repeats": 3}
    return spec, LatencyTable(settings, {"cpu": "x"}, cells, overhead_ms=0.25,
                              correction={"version": 1, "model": "affine",
                                          "coef": {"const": 0.5, "additive": 2.0}})


def test_prediction_is_the_cells_less_the_overhead_then_the_correction():
    spec, table = _table(stem=3.0, head=2.0)  # 6 blocks of 1 ms
    assert table.additive_ms(spec) == pytest.approx(3 + 6 + 2 - 7 * 0.25)
    assert table.predict(spec) == pytest.approx(0.5 + 2.0 * (11 - 1.75))
    other = _spec(attention={"type": "eca"}, position="post_bn", blocks="all")
    with pytest.raises(MissingCellsError, match="2 cell"):
        table.predict(other)


def test_a_table_round_trips_and_bad_files_are_refused(tmp_path):
    spec, table = _table()
    path = table.save(tmp_path / "t.json")
    again = load_table(path)
    assert again.predict(spec) == table.predict(spec) and again.source == str(path)
    data = json.loads(path.read_text())
    (tmp_path / "trunc.json").write_text(path.read_text()[:200])
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_table(tmp_path / "trunc.json")
    for change, field in ((lambda d: d.update(format="x"), "format"),
                          (lambda d: d["settings"].pop("batch"), "settings.batch"),
                          (lambda d: next(iter(d["cells"].values())).update(median_ms=-1),
                           "median_ms")):
        bad = json.loads(json.dumps(data))
        change(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=field):
            load_table(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_table(tmp_path / "absent.json")


def test_a_table_from_another_machine_is_refused_naming_both():
    _, table = _table()
    with pytest.raises(ConfigError, match="another device or runtime") as e:
        check_fingerprint(table, {"cpu": "y"})
    assert "'x'" in str(e.value) and "'y'" in str(e.value)
    check_fingerprint(table, {"cpu": "x"})


@pytest.mark.parametrize("runtime, device, threads, field", [
    ("tvm", "cpu", 1, "runtime"), ("torch", "tpu", 1, "device"), ("torch", "cpu", 0, "threads"),
    ("torch", "cpu", -2, "threads"), ("torch", "cpu", True, "threads")])
def test_bad_timing_settings_name_the_field(runtime, device, threads, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        check_settings(runtime, device, threads)


@pytest.mark.slow
def test_build_is_resumable_and_its_table_predicts_every_spec(tmp_path):
    space = parse_space(SPACE)
    out = tmp_path / "small.json"
    calls = []

    def stop_midway(done, total, note):
        calls.append(done)
        if done == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_table(space, out, progress=stop_midway, **FAST)
    assert not out.exists() and partial_path(out).exists()
    first = load_table(partial_path(out)).cells
    assert first
    table = build_table(space, out, resume=True, **FAST)
    assert not partial_path(out).exists() and load_table(out).cells == table.cells
    assert all(table.cells[k] == v for k, v in first.items())  # kept, not timed again
    assert table.fingerprint == fingerprint("torch", "cpu", 1) and table.overhead_ms > 0
    rng = random.Random(3)
    for _ in range(10):
        spec = space.point(space.sample_params(rng)).spec
        if spec is not None:
            assert table.predict(spec) > 0
    report = validate_table(table, space, n_specs=4, seed=5)
    s = report.summary()
    assert s["specs"] == 4 and 0 <= s["within_10pct"] <= 1
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in report.rows)
    result = profile(_spec(), latency=f"lut:{out}")
    assert result.latency_ms == pytest.approx(table.predict(_spec()))
    assert result.input_size == SIZE
    with pytest.raises(ConfigError, match="another input size"):
        profile(_spec(), (3, 32, 32), latency=f"lut:{out}")
    with pytest.raises(ConfigError, match="lut:FILE"):
        profile(_spec(), latency="table.json")


def test_a_resume_with_other_settings_is_refused(tmp_path):
    space = parse_space(SPACE)
    out = tmp_path / "t.json"
    _, table = _table()
    table.save(partial_path(out))
    with pytest.raises(ConfigError, match="same settings"):
        build_table(space, out, resume=True, **FAST)
    assert not out.exists()


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(json.dumps(SPACE))
    out = tmp_path / "t.json"
    for args, field in ((["--threads", "0"], "threads"), (["--runtime", "tvm"], "runtime"),
                        (["--device", "gpu"], "device")):
        assert main(["latency", "build", str(space), "-o", str(out), *args]) == 2
        assert f"{field}:" in capsys.readouterr().err
        assert not out.exists() and not partial_path(out).exists()
    (tmp_path / "corrupt.json").write_text("{")
    assert main(["latency", "validate", str(tmp_path / "corrupt.json"), "--space",
                 str(space)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def _study(tmp_path: Path, table: Path, **latency) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["space"] = str(ROOT / "search_spaces" / "quickstart_attention.yaml")
    data["data"].update(train_size=300, val_size=200, test_size=100)
    data["train"]["epochs"] = 2
    data["early_stopping"] = {"enabled": False}
    data["objectives"] = [{"name": "val_accuracy", "direction": "maximize"},
                          {"name": "latency_ms", "direction": "minimize"}]
    data["latency"] = {"table": str(table), **latency}
    path = tmp_path / "lat.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_study_latency_section_is_checked(tmp_path):
    from nas_attn.search.study import load_study

    _, table = _table()
    table.save(tmp_path / "t.json")
    study = load_study(_study(tmp_path, tmp_path / "t.json"))
    assert study.latency.missing == "refuse"
    assert study.fingerprint_dict()["latency"]["settings"]["batch"] == 1
    with pytest.raises(ConfigError, match=r"latency\.missing"):
        load_study(_study(tmp_path, tmp_path / "t.json", missing="guess"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_study(_study(tmp_path, tmp_path / "nope.json"))
    bad = LatencyTable({**table.settings, "input_size": [3, 32, 32]}, {}, {})
    bad.save(tmp_path / "t32.json")
    with pytest.raises(ConfigError, match="input size"):
        load_study(_study(tmp_path, tmp_path / "t32.json"))


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_reads_latency_from_a_table_it_never_times(tmp_path):
    """The quickstart's attention space (one network size) with a latency_ms objective and a
    table built here (onnxruntime, as a user would): every trial's latency_ms is the table's
    prediction for its spec."""
    import nas_attn
    from nas_attn.search.study import load_space_or_study

    table = tmp_path / "qs.json"
    study = _study(tmp_path, table)
    space = load_space_or_study(ROOT / "search_spaces" / "quickstart_attention.yaml")
    build_table(space, table, runtime="onnxruntime", warmup=0, repeats=1, calibrate=2,
                input_size=(3, 16, 16))
    t = load_table(table)
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(study), "--trials", "3", "--out", "run",
         "--num-cpus", "2", "-q"], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    df = nas_attn.load_run(tmp_path / "run").trials
    assert len(df) == 3
    for spec, ms in zip(df["spec"], df["latency_ms"], strict=True):
        assert ms == pytest.approx(t.predict(json.loads(spec)))
    foreign = {**json.loads(table.read_text())}
    foreign["fingerprint"] = {**foreign["fingerprint"], "cpu": "another CPU"}
    table.write_text(json.dumps(foreign))
    res = subprocess.run(
        [sys.executable, "-m", "nas_attn", "search", str(study), "--trials", "1", "--out",
         "run2", "--num-cpus", "2", "-q"], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 2 and "another device or runtime" in res.stderr, res.stderr[-2000:]
    assert "another CPU" in res.stderr


def test_a_built_model_still_matches_its_parts_forward():
    spec = _spec(attention={"type": "eca"}, position="mid", blocks="all")
    net = build_model(spec).eval()
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        y = net.forward_stem(x)
        for stage in net.stages:
            y = stage(y)
        assert torch.equal(net.forward_head(y), net(x))
