"""The issue's bad-input list beyond tests/test_latency.py: a runtime that is not installed, a
table for another space (cells missing) given to validate, and validate's own options; each a
ConfigError naming the field, exit 2 from the CLI, and no report written."""

from __future__ import annotations

import json
import sys

import pytest
from test_latency import SPACE, _table

from nas_attn.cli import main
from nas_attn.cost.timing import check_settings, fingerprint
from nas_attn.errors import ConfigError


def test_a_runtime_that_is_not_installed_is_named_with_the_alternative(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ConfigError, match=r"^runtime: .*not installed") as e:
        check_settings("onnxruntime", "cpu", 1)
    assert "torch" in str(e.value)
    check_settings("torch", "cpu", 1)  # the other runtime still works


def _here_table(tmp_path):
    _, table = _table()
    here = table.__class__(**{**table.__dict__, "fingerprint": fingerprint("torch", "cpu", 1)})
    return here.save(tmp_path / "t.json")


def test_validate_with_a_table_for_another_space_names_the_missing_cell(tmp_path, capsys):
    table = _here_table(tmp_path)  # cells of one plain spec only
    space = tmp_path / "s.yaml"
    space.write_text(json.dumps(SPACE))
    report = tmp_path / "v.json"
    assert main(["latency", "validate", str(table), "--space", str(space), "--specs", "3",
                 "--json", str(report)]) == 2
    err = capsys.readouterr().err
    assert "not in the latency table" in err and "tiny stage" in err
    assert not report.exists()


@pytest.mark.parametrize("args, field", [(["--specs", "0"], "specs"),
                                         (["--repeat-spread", "1"], "repeat-spread"),
                                         (["--repeat-spread", "-2"], "repeat-spread"),
                                         (["--spread-specs", "0"], "spread-specs")])
def test_validate_options_are_checked_first(tmp_path, capsys, args, field):
    table = _here_table(tmp_path)
    space = tmp_path / "s.yaml"
    space.write_text(json.dumps(SPACE))
    report = tmp_path / "v.json"
    assert main(["latency", "validate", str(table), "--space", str(space), "--json",
                 str(report), *args]) == 2
    assert f"{field}:" in capsys.readouterr().err and not report.exists()
