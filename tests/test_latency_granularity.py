"""Latency tables at the stage granularity: stem, every whole stage and head as the cells, the
granularity stored in the table and checked on load, a missing stage configuration named, a
space with too many stage configurations refused, and a bad ``--granularity``. Nothing here
times more than a few tiny stages (torch, two repeats)."""

from __future__ import annotations

import json

import pytest
from test_latency import FAST, SIZE, SPACE, _spec, assert_parts_are_the_network

from nas_attn.arch import canonicalize
from nas_attn.cli import main
from nas_attn.cost.cells import GRANULARITIES, cells_with_modules, spec_cells
from nas_attn.cost.latency_model import features
from nas_attn.cost.latency_table import LatencyTable, MissingCellsError, load_table
from nas_attn.errors import ConfigError
from nas_attn.latency import build as build_mod
from nas_attn.latency import build_table, stage_specs, validate_table
from nas_attn.latency.build import partial_path, stage_configurations
from nas_attn.space import parse_space

SETTINGS = {"runtime": "torch", "device": "cpu", "threads": 1, "batch": 1,
            "input_size": list(SIZE), "warmup": 0, "repeats": 3}
SE_LAST = {"attention": {"type": "se"}, "position": "post_add", "blocks": "last"}


def _stage_table(spec, ms=(0.1, 1.0, 2.0, 3.0, 0.2), **extra):
    cells = {c.key: {"desc": dict(c.desc), "median_ms": m, "q1_ms": m, "q3_ms": m,
                     "repeats": 3}
             for c, m in zip(spec_cells(spec, SIZE, granularity="stage"), ms, strict=True)}
    return LatencyTable({**SETTINGS, "granularity": "stage", **extra}, {"cpu": "x"}, cells,
                        overhead_ms=0.05)


def test_stage_cells_are_stem_whole_stages_and_head_and_run_as_the_network():
    spec = canonicalize({"backbone": "tiny", "num_classes": 10, "stages": [
        None, SE_LAST, {"fusion": {"type": "sda"}}]})
    parts = list(cells_with_modules(spec, SIZE, batch=2, device="cpu", granularity="stage"))
    assert [c.desc["kind"] for c, _, _ in parts] == ["stem", "stage", "stage", "stage", "head"]
    assert parts[2][0].desc["holds"]["attention"]["type"] == "se"
    assert_parts_are_the_network(parts)
    cell_level = spec_cells(spec, SIZE, batch=2)  # a fusion stage is the same cell at both
    assert parts[3][0].key == cell_level[-2].key and parts[1][0].key != cell_level[1].key


def test_a_stage_table_predicts_from_its_five_parts():
    spec = _spec(**SE_LAST)
    table = _stage_table(spec)
    assert table.granularity == "stage"
    f = table.features(spec)
    assert f["additive"] == pytest.approx(6.3 - 4 * 0.05)
    assert (f["stage1"], f["cells"], f["gates"]) == (2.0, 5.0, 1.0)
    assert table.predict(spec) == pytest.approx(f["additive"])  # no correction fitted


def test_gates_count_once_per_module_of_a_whole_stage():
    descs = [{"kind": "stage", "stage": 0, "holds": {"attention": None, "fusion": "none"}},
             {"kind": "stage", "stage": 1, "holds": {"attention": {"type": "eca"},
                                                     "fusion": "none"}},
             {"kind": "stage", "stage": 2, "holds": {"attention": {"type": "se"},
                                                     "fusion": {"type": "sda"}}}]
    assert features(descs, [1.0, 1.0, 1.0], 0.0)["gates"] == 3.0


def test_a_stage_configuration_missing_from_the_table_is_named():
    table = _stage_table(_spec())
    other = _spec(attention={"type": "eca"}, position="post_bn", blocks="all")
    with pytest.raises(MissingCellsError, match="1 cell") as e:
        table.predict(other)
    assert "tiny stage 1" in str(e.value) and '"eca"' in str(e.value)


def test_a_table_written_before_granularities_reads_as_cells(tmp_path):
    from test_latency import _table

    spec, table = _table()
    again = load_table(table.save(tmp_path / "old.json"))
    assert "granularity" not in again.settings and again.granularity == "cell"
    assert again.predict(spec) == table.predict(spec)


@pytest.mark.parametrize("granularity, swap", [("stage", "cell"), ("cell", "stage")])
def test_cells_of_another_granularity_are_refused_naming_the_cell(tmp_path, granularity, swap):
    spec = _spec(**SE_LAST)  # no fusion: its stages differ between the granularities
    cells = {c.key: {"desc": dict(c.desc), "median_ms": 1.0}
             for c in spec_cells(spec, SIZE, granularity=swap)}
    path = tmp_path / "t.json"
    LatencyTable({**SETTINGS, "granularity": granularity}, {"cpu": "x"}, cells).save(path)
    with pytest.raises(ConfigError, match="another granularity") as e:
        load_table(path)
    assert f"{path}: cells." in str(e.value) and f"granularity {granularity}" in str(e.value)


def test_an_unknown_granularity_is_refused_naming_the_choices(tmp_path, capsys):
    path = _stage_table(_spec(), granularity="block").save(tmp_path / "t.json")
    with pytest.raises(ConfigError, match=r"settings\.granularity: unknown .*got 'block'") as e:
        load_table(path)
    assert all(g in str(e.value) for g in GRANULARITIES)
    space = tmp_path / "s.yaml"
    space.write_text(json.dumps(SPACE))
    out = tmp_path / "new.json"
    assert main(["latency", "build", str(space), "-o", str(out), "--runtime", "torch",
                 "--granularity", "blocks"]) == 2
    err = capsys.readouterr().err
    assert "granularity:" in err and "'blocks'" in err and "'cell', 'stage'" in err
    assert not out.exists() and not partial_path(out).exists()


def test_a_space_with_too_many_stage_configurations_is_refused(tmp_path, monkeypatch):
    space = parse_space(SPACE)
    count = stage_configurations(space)
    assert count == 1 + (1 + 2 * 2 * 2) + 2 * 2  # stage 0 plain, stage 1 gates, stage 2
    monkeypatch.setattr(build_mod, "MAX_STAGE_CELLS", int(count) - 1)
    out = tmp_path / "t.json"
    with pytest.raises(ConfigError, match=f"^granularity: this space has {int(count)} stage "
                       f"configurations, more than the {int(count) - 1} .*got 'stage'") as e:
        build_table(space, out, **FAST)
    assert "valid: 'cell'" in str(e.value) and not out.exists()


@pytest.mark.slow
def test_a_stage_build_times_each_stage_configuration_once(tmp_path):
    space = parse_space(SPACE)
    out = tmp_path / "t.json"
    table = build_table(space, out, **{**FAST, "calibrate": 0})
    kinds = [c["desc"]["kind"] for c in table.cells.values()]
    assert table.granularity == "stage" and load_table(out).cells == table.cells
    assert kinds.count("stage") == stage_configurations(space) and kinds.count("block") == 0
    keys = {c.key for s in stage_specs(space) for c in table.cells_of(s)}
    assert keys == set(table.cells)
    table.save(partial_path(out))  # a resume at the other granularity is refused
    with pytest.raises(ConfigError, match="same settings"):
        build_table(space, out, resume=True, **FAST, granularity="cell")


def test_validate_can_judge_a_table_on_timings_it_is_given():
    plain = parse_space({"name": "plain", "backbone": "tiny", "input_size": list(SIZE)})
    spec = _spec()
    table = _stage_table(spec)
    report = validate_table(table, plain, n_specs=1, measured_ms={spec.hash: 4.0})
    (row,) = report.rows
    assert row["spec_hash"] == spec.hash and row["measured_ms"] == 4.0
    assert row["error"] == pytest.approx((table.predict(spec) - 4.0) / 4.0)


def test_searched_backbone_args_multiply_the_stage_configurations():
    """A space that searches width times every stage configuration at each width: the count
    the limit checks is the number of distinct stage cells its specs hold."""
    from nas_attn.latency import stage_specs

    fixed, wide = parse_space(SPACE), parse_space({**SPACE, "backbone_args": {"width": [8, 16]}})
    assert stage_configurations(wide) == 2 * stage_configurations(fixed)
    cells = {c.key for spec in stage_specs(wide)
             for c in spec_cells(spec, SIZE, granularity="stage") if c.desc["kind"] == "stage"}
    assert len(cells) == stage_configurations(wide)
