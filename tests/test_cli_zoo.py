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
