"""The regime pilot (benchmarks/tabular/pilot_regimes.py): its regimes are valid settings, its
summary is exact on a constructed sample, and a cut-down run writes every regime's curves."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnbench import generate as gen
from nas_attn.train import TrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tabular" / "pilot_regimes.py"
_spec = importlib.util.spec_from_file_location("pilot_regimes", SCRIPT)
pilot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pilot)


@pytest.mark.parametrize("name", sorted(pilot.REGIMES))
def test_regime_settings_are_valid(name):
    space, data, train = pilot.regime_settings(name)
    TrainConfig(**train)  # raises on an unknown or bad field
    assert set(data) == set(gen.TABLE_DATA)  # overrides only, no new keys
    archs = gen.enumerate_archs(gen.table_space(space))
    assert 64 <= len(archs) <= 1024


def test_summarize_exact():
    # 4 architectures x 2 seeds x 2 epochs; epoch 1 reverses the final order in both seeds,
    # the two seeds' final accuracies agree in order
    final = np.array([[0.5, 0.55], [0.6, 0.65], [0.7, 0.75], [0.8, 0.85]])
    acc = np.stack([final[::-1] - 0.3, final], axis=-1)
    s = pilot.summarize(acc)
    assert s["rho_by_epoch"] == [-1.0, 1.0]
    assert s["seed_rho"] == 1.0
    assert s["median_seed_std"] == pytest.approx(np.std([0.5, 0.55], ddof=1), abs=1e-4)
    assert s["final_mean_q05_50_95"][1] == pytest.approx(0.675, abs=1e-4)


@pytest.mark.slow
def test_cut_down_pilot_writes_curves(tmp_path):
    out = tmp_path / "pilot.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--regimes", "table", "sgd", "--archs",
                          "2", "--seeds", "0", "1", "--epochs", "1", "--workers", "2", "--out",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("rho_by_epoch") == 2
    res = json.loads(out.read_text())
    assert list(res) == ["table", "sgd"]
    for r in res.values():
        acc = np.array(r["acc"])
        assert acc.shape == (2, 2, 1) and ((acc >= 0) & (acc <= 1)).all()
        assert r["space_size"] == 343 and r["train"]["epochs"] == 1
        assert set(r["speedup_bound"]) == {"sample", "additive"} and len(r["pick"]) == 2
        assert r["speedup_bound"]["additive"]["max_speedup"] >= 1.0


def test_regimes_reproduce_the_recorded_pilot_and_sgd_is_the_shipped_recipe():
    # the recorded pilot (benchmarks/tabular/data/pilot_regimes.json) ran these exact settings
    recorded = json.loads((SCRIPT.parent / "data" / "pilot_regimes.json").read_text())["regimes"]
    for name, r in recorded.items():
        _, data, train = pilot.regime_settings(name)
        assert (data, train) == (r["data"], r["train"]), name
    _, data, train = pilot.regime_settings("sgd")
    assert TrainConfig(**train) == TrainConfig(**gen.TABLE_TRAIN) and data == gen.TABLE_DATA


def test_speedup_bound_reads_the_sample_and_the_additive_model():
    # a 2 x 2 product space; architecture 0 dominates (best accuracy, fewest FLOPs) and the
    # accuracies are additive, so the model of the sample {0, 1, 2} predicts 3 exactly
    params = [{"a": i, "b": j} for i in range(2) for j in range(2)]
    final = np.array([0.9, 0.7, 0.6, 0.4])  # a=1 costs 0.3, b=1 costs 0.2
    pick = np.array([0, 1, 2])
    acc = np.stack([np.linspace(0.1, f, 3) for f in final[pick]])[:, None, :].repeat(2, axis=1)
    assert pilot.additive_fit(final[pick], pick, params) == pytest.approx(final)
    b = pilot.speedup_bound(acc, pick, params, [1.0, 2.0, 3.0, 4.0])
    for reading in ("sample", "additive"):  # the front is architecture 0 alone, drawn 1 in 4
        assert b[reading]["front"] == 1 and b[reading]["max_speedup"] == 1.0
        assert b[reading]["median_random_to_95"] == b[reading]["median_oracle_to_95"] <= 10
