"""Every command's bad input, as a user meets it: a subprocess, exit code 2, a message that
names the field and the bad value, and nothing written (the folder holds what it held)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPEC = "backbone: tiny\nnum_classes: 10\nstages: [null, null, null]\n"
BAD_SPEC = "backbone: tiny\nnum_classes: 10\nstages: [{attention: {type: nope}}, null, null]\n"
CASES = {
    "zoo": (["zoo", "--channels", "0"], "channels"),
    "profile": (["profile", "missing.yaml"], "SPEC"),
    "profile-input": (["profile", "spec.yaml", "--input-size", "4", "16", "16"], "input_size"),
    "space": (["space", "missing.yaml"], "FILE"),
    "train": (["train", "bad.yaml", "--epochs", "1"], "stages[0].attention"),
    "search": (["search", "bad_study.yaml", "--trials", "1"], "bad_study.yaml"),
    "resume": (["resume", "not_a_run"], "not_a_run"),
    "dashboard": (["dashboard", "not_a_run"], "not_a_run"),
    "export": (["export", "not_a_run", "--pick", "knee"], "not_a_run"),
    "ablate": (["ablate", "spec.yaml", "--design", "nope"], "design"),
    "latency-build": (["latency", "build", "spec.yaml", "--threads", "0"], "threads"),
    "latency-validate": (["latency", "validate", "corrupt.json", "--space", "spec.yaml"],
                         "corrupt.json"),
}


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_names_the_field_and_writes_nothing(name, tmp_path):
    args, field = CASES[name]
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    (tmp_path / "bad_study.yaml").write_text("name: x\nspace: {backbone: tiny}\nsearh: {}\n")
    (tmp_path / "corrupt.json").write_text("{")
    (tmp_path / "not_a_run").mkdir()
    before = _listing(tmp_path)
    res = subprocess.run([sys.executable, "-m", "nas_attn", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-2000:]
    assert field in res.stderr, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert _listing(tmp_path) == before, "something was written"
