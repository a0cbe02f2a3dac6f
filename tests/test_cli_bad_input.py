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


# -- plugins (issue 20): each refused with the file, the module or the field named -----------

PLUGIN = """\
import pathlib
import torch
from torch import nn
from nas_attn.modules import register_module

pathlib.Path(__file__).with_suffix(".imported").write_text("imported")


@register_module({name!r}, kind="gate")
class Gate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, {out}, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return {expr}
"""
PLUGIN_FILES = {
    "my_gate.py": PLUGIN.format(name="my_gate", out="channels", expr="x * self.proj(x).sigmoid()"),
    "halver.py": PLUGIN.format(name="halver", out="channels // 2", expr="self.proj(x)"),
    "clash.py": PLUGIN.format(name="eca", out="channels", expr="x"),
    "broken.py": "import torch\n\n\nraise ImportError('needs a package that is missing')\n",
}
PLUGIN_STUDY = ("name: plug\nplugins: [my_gate.py]\n"
                "space: {backbone: tiny, num_classes: 10, stages: [{attention: {my_gate: , se: }}]}\n"
                "data: {name: synthetic, train_size: 32, val_size: 16, test_size: 16, "
                "image_size: 16}\ntrain: {epochs: 1, batch_size: 16}\n")
HALVER_SPEC = ("backbone: tiny\nnum_classes: 10\n"
               "stages: [null, {attention: {type: halver}, position: post_bn}]\n")
PLUGIN_CASES = {
    "study-without-consent": (["search", "plug.yaml", "--trials", "1"],
                              ["plug.yaml", "plugins", "my_gate.py", "--allow-plugins"]),
    "flag-without-consent": (["train", "spec.yaml", "--plugin", "my_gate.py", "--epochs", "1"],
                             ["--plugin", "my_gate.py", "--allow-plugins",
                              "NAS_ATTN_ALLOW_PLUGINS"]),
    "import-failure": (["profile", "spec.yaml", "--plugin", "broken.py", "--allow-plugins"],
                       ["broken.py:4", "ImportError: needs a package that is missing"]),
    "clash": (["zoo", "--plugin", "clash.py", "--allow-plugins"],
              ["attention module 'eca'", "nas_attn/modules/eca.py", "clash.py:9"]),
    "shape": (["profile", "halver_spec.yaml", "--plugin", "halver.py", "--allow-plugins"],
              ["stages[1].attention", "stage 1", "post_bn",
               "returns (1, 16, 8, 8) for an input of (1, 32, 8, 8)"]),
    "shape-in-search": (["search", "plug_halver.yaml", "--trials", "1", "--allow-plugins"],
                        ["halver", "(1, 16, 8, 8)", "(1, 32, 8, 8)"]),
}


@pytest.mark.parametrize("name", sorted(PLUGIN_CASES))
def test_bad_plugin_exits_2_names_it_and_writes_nothing(name, tmp_path):
    args, needles = PLUGIN_CASES[name]
    for fname, text in PLUGIN_FILES.items():
        (tmp_path / fname).write_text(text)
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "halver_spec.yaml").write_text(HALVER_SPEC)
    (tmp_path / "plug.yaml").write_text(PLUGIN_STUDY)
    (tmp_path / "plug_halver.yaml").write_text(
        PLUGIN_STUDY.replace("my_gate", "halver").replace("stages: [{", "stages: [null, {"))
    before = _listing(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NAS_ATTN_ALLOW_PLUGINS"}
    res = subprocess.run([sys.executable, "-m", "nas_attn", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**env, "RAY_AUTH_MODE": "disabled", "PYTHONDONTWRITEBYTECODE": "1"})
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-2000:]
    err = " ".join(res.stderr.split())  # rich may wrap a long line
    for needle in needles:
        assert needle in err, (needle, out[-2000:])
    assert "Traceback" not in out, out[-2000:]
    if "consent" in name:
        assert not (tmp_path / "my_gate.imported").exists(), "the plugin ran without consent"
    after = {k: v for k, v in _listing(tmp_path).items() if not k.endswith(".imported")}
    assert after == before, "something was written"
