"""``nas-attn zoo`` and ``nas-attn profile`` through the real CLI entry point."""

from __future__ import annotations

import json

from nas_attn.cli import main
from nas_attn.modules import MODULES


def test_zoo_json_lists_every_module_and_variant(capsys):
    c = 32
    assert main(["zoo", "--channels", str(c), "--size", "6", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["channels"] == c and out["size"] == [6, 5]
    rows = {(r["module"], r["variant"]): r for r in out["modules"]}
    expected = {(n, v) for n, e in MODULES.items() for v in ["default", *e.variants]}
    assert set(rows) == expected
    for (name, _), row in rows.items():
        entry = MODULES.get(name)
        assert row["kind"] == entry.kind and row["paper"] == entry.paper
        hp = entry.validate(row["hparams"], name)
        args = {"gate": (c,), "conv": (c, c, 3, 1), "fusion": (c, 2)}[entry.kind]
        if entry.reason_invalid(*args, **hp):
            assert row["error"] and row["params"] is None
            continue
        assert row["error"] is None
        assert row["params"] == entry.params(*args, **hp)
        assert row["flops"] > 0


def test_zoo_table_and_bad_channels(capsys):
    assert main(["zoo", "--channels", "16", "--size", "4", "4"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in MODULES)
    assert main(["zoo", "--channels", "0"]) == 2
    assert "--channels" in capsys.readouterr().err


def test_profile_command(tmp_path, capsys):
    from nas_attn.cost import profile

    spec = tmp_path / "spec.yaml"
    spec.write_text("backbone: resnet18_cifar\nstages:\n  - attention: {type: se}\n")
    assert main(["profile", str(spec), "--input-size", "3", "16", "16", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = profile(str(spec), (3, 16, 16))
    assert got == json.loads(json.dumps(want.to_dict()))
    assert got["attention_flops"] > 0 and got["latency_ms"] is None
    assert main(["profile", str(spec), "--latency", "--repeats", "2"]) == 0
    assert "latency" in capsys.readouterr().out
    assert main(["profile", str(tmp_path / "missing.yaml")]) == 2
    assert main(["profile", str(spec), "--input-size", "1", "16", "16"]) == 2


def test_zoo_check_runs_the_kit(capsys):
    assert main(["zoo", "--check", "eca", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["module"] == "eca" and report["ok"] and report["failures"] == []
    assert "onnx" in report["ran"] and "positions" in report["ran"]
    assert main(["zoo", "--check", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--check" in err and "'eca'" in err


def test_zoo_check_of_a_failing_plugin_exits_1(tmp_path, capsys):
    from nas_attn import plugins

    f = tmp_path / "zoo_halver.py"
    f.write_text("from torch import nn\nfrom nas_attn.modules import register_module\n\n\n"
                 "@register_module('zoo_halver', kind='gate')\n"
                 "class Halver(nn.Module):\n"
                 "    def __init__(self, channels: int) -> None:\n"
                 "        super().__init__()\n"
                 "        self.proj = nn.Conv2d(channels, channels // 2, 1)\n\n"
                 "    def forward(self, x):\n        return self.proj(x)\n")
    try:
        assert main(["zoo", "--check", "zoo_halver", "--plugin", str(f), "--allow-plugins"]) == 1
        out = capsys.readouterr().out
        assert "FAIL shape [channels=8 size=8x8 batch=1 eval]" in out
        assert "output (1, 4, 8, 8), expected (1, 8, 8, 8)" in out
    finally:
        for p in plugins.loaded_plugins():
            if p.module == "zoo_halver":
                plugins.unload(p)
        plugins._CONSENT[0] = False


def test_zoo_plugins_lists_entry_points(capsys):
    assert main(["zoo", "--plugins", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"entry_points": [], "allowed": False}
