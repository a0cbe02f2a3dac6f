"""A latency budget (``constraints: {max_latency_ms: X}`` in the space) checked with the study's
latency table before any training: a spec over it is proposed with a violation (told FAIL
``over_budget``, never trained), the budget is the hypervolume reference, and bad budgets or a
budget without a table are refused naming the field. The table here is hand-made (no timing)."""

from __future__ import annotations

import statistics

import optuna
import pytest
from test_latency import SPACE

from nas_attn.cost.cells import spec_cells
from nas_attn.cost.latency_table import LatencyTable
from nas_attn.cost.timing import fingerprint
from nas_attn.errors import ConfigError
from nas_attn.latency import stage_specs
from nas_attn.search.from_study import StudyProposer, space_limits
from nas_attn.search.study import parse_study
from nas_attn.space import parse_space


def _study_dict(table: str | None, **constraints):
    out = {"name": "budget", "space": {**SPACE, "constraints": constraints},
           "data": {"name": "cluttered-digits", "image_size": 16, "train_size": 64,
                    "val_size": 32, "test_size": 32},
           "train": {"epochs": 1},
           "objectives": [{"name": "val_accuracy", "direction": "maximize"},
                          {"name": "flops", "direction": "minimize"}]}
    if table:
        out["latency"] = {"table": table}
    return out


def _table_for(space, path):
    """Every cell of ``space``: 1 ms, plus 1 ms per gate it holds (this machine's fingerprint)."""
    size = tuple(space.default_input_size())
    cells = {}
    for spec in stage_specs(space):
        for c in spec_cells(spec, size):
            gates = len((c.desc.get("holds") or {}).get("gates") or {})
            cells[c.key] = {"desc": dict(c.desc), "median_ms": 1.0 + gates, "q1_ms": 1.0,
                            "q3_ms": 1.0, "repeats": 1}
    settings = {"runtime": "torch", "device": "cpu", "threads": 1, "batch": 1,
                "input_size": list(size), "warmup": 0, "repeats": 1}
    table = LatencyTable(settings, fingerprint("torch", "cpu", 1), cells, source=str(path))
    table.save(path)
    return table


def test_specs_over_the_latency_budget_are_proposed_with_a_violation(tmp_path):
    plain = parse_study(_study_dict(None), tmp_path).space
    table = _table_for(plain, tmp_path / "t.json")
    budget = statistics.median(table.predict(s) for s in stage_specs(plain))
    study = parse_study(_study_dict(str(tmp_path / "t.json"), max_latency_ms=budget), tmp_path)
    assert study.space.constraints.max_latency_ms == budget
    assert space_limits(study.space) == {"latency_ms": budget}
    propose = StudyProposer(study)  # latency_ms is no objective: the budget alone reads the table
    opt = optuna.create_study(directions=["maximize", "minimize"],
                              sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {True: 0, False: 0}
    for _ in range(12):
        p = propose(opt.ask())
        ms = p.costs["latency_ms"]
        assert ms == pytest.approx(table.predict(p.spec))
        over = ms > budget
        seen[over] += 1
        assert (p.violation is not None) == over
        if over:
            assert p.violation == f"network: latency_ms {ms:,.4g} > max {budget:,.4g}"
    assert seen[True] and seen[False]


@pytest.mark.parametrize("value", [0, -1.5, "2ms", True, float("nan"), float("inf")])
def test_a_bad_latency_budget_names_the_field(value):
    with pytest.raises(ConfigError, match=r"^constraints\.max_latency_ms:") as e:
        parse_space({**SPACE, "constraints": {"max_latency_ms": value}})
    assert "positive number of milliseconds" in str(e.value)


def test_a_latency_budget_without_a_table_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"max_latency_ms.*latency table") as e:
        parse_study(_study_dict(None, max_latency_ms=2.0), tmp_path)
    assert "latency.table" in str(e.value)


def test_a_space_without_a_latency_budget_keeps_its_hash():
    space = parse_space(SPACE)
    assert "max_latency_ms" not in space.to_dict()["constraints"]
    budgeted = parse_space({**SPACE, "constraints": {"max_latency_ms": 3}})
    assert budgeted.hash != space.hash
    assert parse_space(budgeted.to_dict()).constraints.max_latency_ms == 3.0


def test_the_dry_run_names_the_budget_it_cannot_check(tmp_path, capsys):
    import json

    from nas_attn.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**SPACE, "constraints": {"max_latency_ms": 1.5}}))
    assert main(["space", str(path), "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "latency budget" in out and "1.5 ms" in out
