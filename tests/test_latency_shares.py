"""A zoo module's share of a stage's FLOPs against its share of the stage's latency (the
table of docs/cost-model.md): the FLOPs share agrees with whole-network counts, a module the
stage cannot hold is a row with the reason, and the markdown names every row. Tiny timings."""

from __future__ import annotations

import pytest

from nas_attn.arch import canonicalize
from nas_attn.cost import profile
from nas_attn.errors import ConfigError
from nas_attn.latency.shares import module_shares, shares_markdown

FAST = {"runtime": "torch", "warmup": 0, "repeats": 2}


def _flops(stage1):
    return profile(canonicalize({"backbone": "tiny", "num_classes": 10,
                                 "stages": [None, stage1, None]}), (3, 16, 16)).flops


def test_a_modules_flops_share_is_what_it_adds_to_its_stage():
    rows = module_shares("tiny", 1, (3, 16, 16), ["se", "sda"], **FAST)
    assert [r["module"] for r in rows] == ["se", "sda"]
    for r, choice in zip(rows, ({"attention": {"type": "se"}, "blocks": "all"},
                                {"fusion": {"type": "sda"}}), strict=True):
        added = _flops(choice) - _flops(None)
        assert r["flops"] - r["plain_flops"] == pytest.approx(added)
        assert r["flops_share"] == pytest.approx(added / r["flops"])
        assert r["ms"] > 0 and r["plain_ms"] > 0
        assert r["latency_share"] == pytest.approx((r["ms"] - r["plain_ms"]) / r["ms"])
    md = shares_markdown(rows)
    assert md.count("| tiny stage 1 |") == 2 and f"{rows[0]['flops_share']:.1%}" in md


def test_a_module_the_stage_cannot_hold_is_a_row_with_the_reason():
    rows = module_shares("mobilenetv2", 3, (3, 224, 224), ["rfaconv"], **FAST)
    assert "flops_share" not in rows[0] and "3x3 conv" in rows[0]["skipped"]
    assert "n/a (" in shares_markdown(rows)


def test_bad_timing_settings_are_refused_before_anything_runs():
    with pytest.raises(ConfigError, match=r"^threads:"):
        module_shares("tiny", 1, (3, 16, 16), ["se"], runtime="torch", threads=0)


def test_a_module_the_runtime_cannot_run_is_a_row_with_the_reason():
    # CRA pools to 7x7, which ONNX cannot export from tiny's 8x8 stage 1
    rows = module_shares("tiny", 1, (3, 16, 16), ["cra"], runtime="onnxruntime", warmup=0,
                         repeats=1)
    assert "flops_share" not in rows[0] and "ONNX" in rows[0]["skipped"]
