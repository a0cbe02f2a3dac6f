"""fvcore's FlopCountAnalysis with nas-attn's handles gives nas-attn's numbers, exactly.

Every registered module (inside the tiny net, at each place a spec can put it, plus settings
that change the ops it runs) and every registered backbone (marked slow: tracing deep nets takes
seconds) is counted by both counters on tiny inputs; totals, the attention share and the
per-module split must be equal, with no op left uncounted by either.
"""

from __future__ import annotations

import json

import pytest
import torch

from nas_attn.backbones import shipped_backbones
from nas_attn.cli import main
from nas_attn.cost import profile, register_flop_handler
from nas_attn.cost.fvcore import flop_count_analysis, profile_fvcore
from nas_attn.cost.handlers import FLOP_HANDLERS, FREE_OPS
from nas_attn.modules import MODULES, create_module

SLOT = {"gate": "attention", "conv": "conv", "fusion": "fusion"}

# settings that run other ops than the defaults do (uneven adaptive windows, other fusions...)
SETTINGS = [
    ("cra", {"pool_size": 3}), ("sem", {"operators": ["se", "eca", "affine", "cbam", "cra"]}),
    ("cat", {"fusion": "sequential", "pooling": ["entropy"]}), ("gc", {"fusion": "channel_mul"}),
    ("nonlocal", {"sub_sample": False}), ("ela", {"version": "S"}), ("eca", {"kernel_size": 5}),
    ("cbam", {"rd_divisor": 8}),
]


def _assert_same(spec_or_module, size) -> None:
    ours = profile(spec_or_module, size, strict=True)
    fv = profile_fvcore(spec_or_module, size)
    assert fv.unsupported == {}
    assert (fv.flops, fv.attention_flops, fv.backbone_flops) == (
        ours.flops, ours.attention_flops, ours.backbone_flops)
    assert fv.by_module == ours.by_module


def _spec(name: str, hp: dict, position: str = "post_bn") -> dict:
    slot = SLOT[MODULES.get(name).kind]
    stage = {slot: {"type": name, **hp}}
    if slot == "attention":
        stage["position"] = position
    return {"backbone": "tiny", "stages": [None, None, stage]}  # 2 blocks of 64 channels


@pytest.mark.parametrize("name", [n for n, _ in MODULES.items()])
def test_every_module_counts_the_same(name):
    _assert_same(_spec(name, {}), (3, 16, 16))


@pytest.mark.parametrize(("name", "hp"), SETTINGS, ids=[n for n, _ in SETTINGS])
def test_other_settings_count_the_same(name, hp):
    _assert_same(_spec(name, hp), (3, 16, 16))


@pytest.mark.parametrize("position", ["pre", "mid", "post_add", "identity"])
def test_every_position_counts_the_same(position):
    _assert_same(_spec("cbam", {}, position), (3, 16, 16))


@pytest.mark.slow  # tracing a ResNet-101 takes seconds, whatever the input size
@pytest.mark.parametrize("backbone", shipped_backbones())
def test_every_backbone_counts_the_same(backbone):
    _assert_same({"backbone": backbone, "stages": [{"attention": "se"}]}, (3, 32, 32))


def test_a_bare_module_counts_the_same():
    _assert_same(create_module("ca", 16), (16, 6, 5))


class _Scalars(torch.nn.Module):
    """Size arithmetic (``h * w``) next to real 0-dim data (a product of two scalar weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(2.0))
        self.b = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        return x.reshape(x.shape[0], x.shape[1], h * w) * (self.a * self.b)


def test_shape_arithmetic_is_free_and_scalar_data_is_not():
    m = _Scalars()
    ours = profile(m, (2, 3, 4), strict=True)
    assert ours.flops == 1 + 2 * 3 * 4  # a * b, then the product with x
    assert profile_fvcore(m, (2, 3, 4)).flops == ours.flops


def test_fvcore_alone_misses_most_of_an_attention_module():
    """Why the handles are added: fvcore's own defaults skip sigmoid, mul and mean, so SE at 64
    channels looks like its two 1x1 convs alone."""
    from fvcore.nn import FlopCountAnalysis

    se = create_module("se", 64).eval()
    x = torch.zeros(1, 64, 8, 8)
    plain = FlopCountAnalysis(se, (x,))
    plain.unsupported_ops_warnings(False)
    assert plain.total() == 2 * 64 * 4  # the two 1x1 convs (64 -> 4 -> 64) on a 1x1 map
    assert flop_count_analysis(se, (x,)).total() == profile(se, (64, 8, 8)).flops
    # mean and the gating mul: 1 per element of the map; relu 4, sigmoid 64
    assert profile(se, (64, 8, 8)).flops == 2 * 64 * 4 + 4 + 64 + 2 * 64 * 8 * 8


def test_a_registered_handler_serves_both_counters(monkeypatch):
    monkeypatch.setitem(FLOP_HANDLERS, "aten::relu_", FLOP_HANDLERS["aten::relu_"])
    se = create_module("se", 16).eval()
    before = profile(se, (16, 4, 4)).flops
    register_flop_handler("aten::relu_", lambda args, kwargs, out: 1000)
    try:
        after = profile(se, (16, 4, 4)).flops
        assert after == before - 1 + 1000  # one relu_ on the (1, 1, 1, 1) hidden map
        assert profile_fvcore(se, (16, 4, 4)).flops == after
    finally:
        monkeypatch.undo()
    assert "aten::relu_" not in FREE_OPS


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("backbone: tiny\nstages:\n  - {attention: {type: eca, k_size: 3}}\n"
                    "  - {conv: rfcaconv}\n  - {attention: cbam, position: post_add}\n")
    return path


def test_profile_with_fvcore_prints_our_numbers(spec_file, capsys):
    assert main(["profile", str(spec_file), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["profile", str(spec_file), "--json", "--counter", "fvcore", "--by-module"]) == 0
    fv = json.loads(capsys.readouterr().out)
    assert fv["counter"] == "fvcore" and "counter" not in ours  # default output unchanged
    for key in ("flops", "attention_flops", "backbone_flops", "by_module", "params"):
        assert fv[key] == ours[key], key
    assert "layer2.0.conv1" in fv["module_table"] and "#flops" in fv["module_table"]


def test_by_module_prints_fvcores_table(spec_file, capsys):
    assert main(["profile", str(spec_file), "--by-module", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "flop_count_table" in out and "| layer1.0 " in out and "layer1.0.conv1" not in out


def test_an_unknown_counter_is_refused(spec_file, capsys):
    assert main(["profile", str(spec_file), "--counter", "torch"]) == 2
    err = capsys.readouterr().err
    assert "--counter" in err and "'torch'" in err and "'fvcore'" in err
