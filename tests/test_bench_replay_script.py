"""``benchmarks/tabular/replay.py`` end to end on the shipped table, cut down: every method
family (random, TPE, NSGA-II, their early-stopping and startup variants, GP) writes its
summary, targets, startup bounds, HV-level epochs and the SVG plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "tabular" / "replay.py"

pytestmark = pytest.mark.slow


def test_cut_down_replay_writes_every_output(tmp_path):
    out, svg, gp_svg = tmp_path / "r.json", tmp_path / "r.svg", tmp_path / "gp.svg"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "2", "--trials", "24", "--workers", "2",
         "--es", "3,1", "3,1,dom", "--oracle", "--learn", "--pause", "--startup", "5",
         "--gp-reps", "2", "--gp-trials", "12", "--gp-methods", "plain", "es", "startup",
         "learn", "pause", "--gp-svg", str(gp_svg),
         "--json", str(out), "--svg", str(svg)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    es = {f"{s}+es{tag}" for s in ("random", "tpe", "nsga2") for tag in ("", "(3,1,dom)")}
    gp = {"gp", "gp-s5", "gp+es", "gp+es+learn", "gp+es+pause+learn"}
    pause = {f"{s}+es+pause{o}" for s in ("random", "tpe", "nsga2") for o in ("", "+oracle")}
    methods = {"random", "tpe", "nsga2", "tpe-s5", "tpe-s5+es", *gp, *es, *pause,
               *(m + "+oracle" for m in es), "tpe+es+learn", "tpe+es(3,1,dom)+learn"}
    assert set(r["summary"]) == methods
    assert set(r["epochs_to_hv_levels"]) == methods
    assert r["gp"]["wall_seconds"] > 0 and r["summary"]["gp-s5"]["trials"] == 12
    assert set(r["startup_oracle_by_startup"]) == {"10", "5"}
    assert r["startup_oracle"] == r["startup_oracle_by_startup"]["10"]
    lo, hi = (float(v) for v in r["summary"]["random"]["trials_to_target_ci"])  # "inf" kept
    assert lo <= float(r["summary"]["random"]["trials_to_target"]) <= hi
    text = svg.read_text()  # the plot leaves GP out
    assert text.startswith("<svg") and ">tpe-s5+es</text>" in text and ">gp" not in text
    gp_text = gp_svg.read_text()  # GP beside each sampler with and without stopping
    for name in ("random", "random+es", "tpe", "tpe+es", "gp", "gp-s5", "gp+es+learn"):
        assert f">{name}</text>" in gp_text, name
    assert ">tpe-s5+es</text>" not in gp_text and ">random+es+oracle</text>" not in gp_text
    assert "startup oracle (5 random trials" in res.stdout
    assert [h["stop_dominated"] for h in r["halving"]] == [False, True]
    assert "tpe+es+pause" in r["targets"]["early_stopping"]
    ratio = r["targets"]["early_stopping"]["random+es(3,1,dom)"]
    assert len(ratio["epoch_ratio_ci95"]) == 2


@pytest.mark.parametrize("picked, gp", [(["startup"], {"gp-s5"}),
                                        (["learn"], {"gp+es+learn"})])
def test_gp_methods_pick_the_gp_replays(picked, gp, tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "2", "--trials", "12", "--samplers", "random",
         "--startup", "5", "--gp-reps", "2", "--gp-trials", "8", "--gp-methods", *picked,
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(json.loads(out.read_text())["summary"]) == {"random", "random+es", *gp}


@pytest.mark.parametrize("bad", ["3", "3,1,x", "a,1"])
def test_bad_early_stopping_setting_is_refused(bad):
    res = subprocess.run([sys.executable, str(SCRIPT), "--reps", "1", "--es", bad],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode != 0
    assert f"--es: {bad!r}" in res.stderr and "ETA,GRACE,dom" in res.stderr


@pytest.mark.parametrize("flag, bad", [("--reps", "0"), ("--trials", "0"), ("--gp-reps", "-1")])
def test_bad_counts_are_refused_before_anything_runs(flag, bad, tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, str(SCRIPT), flag, bad, "--json", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2
    assert f"{flag}: {bad} is not an integer >=" in res.stderr and not out.exists()
