"""Ablation statistics against hand-computed and scipy values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nas_attn.ablation.stats import (
    analyze,
    cell_means,
    factorial_effects,
    hedges_j,
    holm,
    paired,
    paired_power,
    seeds_needed,
    t_interval,
)
from nas_attn.errors import ConfigError


def test_t_interval_by_hand():
    x = [90.1, 90.5, 89.8, 90.9, 90.2]
    mean = sum(x) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 4)
    half = 2.776445 * sd / math.sqrt(5)  # t_{0.975, 4} from tables
    m, lo, hi = t_interval(x)
    assert m == pytest.approx(90.3)
    assert lo == pytest.approx(mean - half, abs=1e-5) and hi == pytest.approx(mean + half, abs=1e-5)
    assert math.isnan(t_interval([1.0])[1])


def test_holm_known_values_and_nan():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.5, math.nan, 0.01])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped, monotone


def test_paired_matches_scipy():
    base = np.array([90.0, 91.2, 89.5, 90.8, 90.1, 89.9])
    arm = base + np.array([0.3, -0.1, 0.6, 0.2, 0.4, 0.1])
    pr = paired(arm - base)
    assert pr.t_p == pytest.approx(stats.ttest_rel(arm, base).pvalue)
    assert pr.wilcoxon_p == pytest.approx(stats.wilcoxon(arm, base).pvalue)
    d = arm - base
    assert pr.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert pr.n == 6 and pr.mean == pytest.approx(0.25)


def test_wilcoxon_small_sample_exact():
    # 5 differences, all positive: exact two-sided p = 2 / 2^5
    pr = paired([0.1, 0.2, 0.3, 0.4, 0.5])
    assert pr.wilcoxon_p == pytest.approx(2 / 32)
    # one negative of smallest rank: W- = 1, P(W <= 1) = 2/32, two-sided 4/32
    assert paired([-0.1, 0.2, 0.3, 0.4, 0.5]).wilcoxon_p == pytest.approx(4 / 32)


def test_paired_degenerate_cases():
    zero = paired([0.0, 0.0, 0.0])
    assert zero.t_p == 1.0 and zero.wilcoxon_p == 1.0 and zero.d_z == 0.0
    one = paired([0.4])
    assert one.n == 1 and math.isnan(one.t_p) and math.isnan(one.wilcoxon_p)
    const = paired([0.2, 0.2, 0.2])
    assert const.t_p == 0.0 and const.d_z == math.inf


def test_hedges_j_exact_and_approximation():
    assert hedges_j(10) == pytest.approx(1 - 3 / (4 * 10 - 1), abs=1e-3)
    assert hedges_j(4) < hedges_j(10) < 1


def test_power_against_simulation_free_reference():
    # d_z = 1, n = 10: the known power of a two-sided paired t-test is about 0.80
    assert paired_power(1.0, 10) == pytest.approx(0.8031, abs=2e-3)
    assert seeds_needed(1.0, 1.0) == 10


def test_seeds_needed_monotone_in_variance():
    needed = [seeds_needed(0.5, sd) for sd in (0.1, 0.3, 0.5, 1.0, 2.0)]
    assert needed == sorted(needed) and needed[0] < needed[-1]
    for n, sd in zip(needed, (0.1, 0.3, 0.5, 1.0, 2.0), strict=True):
        assert paired_power(0.5 / sd, n) >= 0.8
        assert n == 2 or paired_power(0.5 / sd, n - 1) < 0.8
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.3, 0.0) == 2


def _tidy(arms: dict[str, list[float]], flops: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"arm": a, "seed": s, "val_accuracy": v, "flops": flops[a],
                          "params": 1000.0}
                         for a, vals in arms.items() for s, v in enumerate(vals)])


DATA = _tidy(
    {"base": [0.900, 0.905, 0.898, 0.902, 0.901],
     "eca": [0.898, 0.904, 0.899, 0.899, 0.899],
     "cbam": [0.910, 0.915, 0.909, 0.911, 0.913]},
    {"base": 1000.0, "eca": 987.0, "cbam": 1100.0})


def test_analyze_rows_and_values():
    r = analyze(DATA, descriptions={"eca": "ECA instead of SE at stage 3"})
    assert r["arm"].tolist() == ["base", "eca", "cbam"]
    eca = r.iloc[1]
    d = (np.array([0.898, 0.904, 0.899, 0.899, 0.899]) - [0.900, 0.905, 0.898, 0.902, 0.901]) * 100
    assert eca["diff_mean"] == pytest.approx(d.mean())
    assert eca["t_p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    ps = r["t_p"].iloc[1:].to_numpy()
    assert r["p_holm"].iloc[1:].to_numpy() == pytest.approx(holm(ps))
    assert eca["flops_delta"] == -13.0 and eca["flops_delta_pct"] == pytest.approx(-1.3)
    assert eca["mean"] == pytest.approx(89.98)
    assert bool(r.iloc[2]["significant"]) and not bool(eca["significant"])
    lo, hi = eca["diff_ci_low"], eca["diff_ci_high"]
    assert eca["verdict"].startswith(
        f"ECA instead of SE at stage 3: {d.mean():+.1f} pp [{lo:+.1f}, {hi:+.1f}], p=")
    assert "after Holm (not significant), -1.3% FLOPs" in eca["verdict"]
    assert r["arm"].dtype == "str"


def test_underpowered_warning():
    r = analyze(DATA)
    eca = r.iloc[1]
    assert eca["underpowered"] and eca["seeds_needed"] > 5
    assert "too few seeds" in eca["warning"] and "too few seeds" in eca["verdict"]
    assert not r.iloc[2]["underpowered"]


def test_hedges_column_and_percent_input():
    pct = DATA.assign(val_accuracy=DATA["val_accuracy"] * 100)
    a, b = analyze(DATA, hedges=True), analyze(pct, hedges=True)
    assert a["diff_mean"].iloc[1:].to_numpy() == pytest.approx(b["diff_mean"].iloc[1:].to_numpy())
    assert a["g_z"].iloc[1] == pytest.approx(a["d_z"].iloc[1] * hedges_j(4))


def test_analyze_bad_input():
    with pytest.raises(ConfigError, match="no results for the base arm"):
        analyze(DATA, base="nope")
    with pytest.raises(ConfigError, match="more than one row"):
        analyze(pd.concat([DATA, DATA.iloc[:1]]))
    with pytest.raises(ConfigError, match="no accuracy column"):
        analyze(DATA.drop(columns=["val_accuracy"]))


def test_unpaired_seeds_are_left_out_of_the_pairing():
    extra = pd.concat([DATA, pd.DataFrame([{"arm": "eca", "seed": 99, "val_accuracy": 0.5,
                                            "flops": 987.0, "params": 1000.0}])])
    r = analyze(extra)
    assert r.iloc[1]["n"] == 6 and r.iloc[1]["n_paired"] == 5


def _factorial_data():
    # 2x2 with seeds 0..3: y = 90 + 1*A + 0.5*B + 0.2*A*B (A, B in {0, 1}) + seed noise
    noise = [0.0, 0.1, -0.1, 0.05]
    cells = pd.DataFrame({"arm": ["a0b0", "a1b0", "a0b1", "a1b1"], "A": ["lo", "hi", "lo", "hi"],
                          "B": ["x", "x", "y", "y"]})
    rows = []
    for arm, a, b in [("a0b0", 0, 0), ("a1b0", 1, 0), ("a0b1", 0, 1), ("a1b1", 1, 1)]:
        for s, e in enumerate(noise):
            rows.append({"arm": arm, "seed": s,
                         "val_accuracy": 90 + a + 0.5 * b + 0.2 * a * b + e + 0.01 * s * a
                                         + 0.02 * (s % 2) * b})
    return pd.DataFrame(rows), cells


def test_factorial_2x2_contrasts():
    data, cells = _factorial_data()
    eff = factorial_effects(data, cells).set_index("term")
    # main A = mean(hi) - mean(lo) = 1 + 0.2/2 + seed term 0.01*mean(s) = 1.1 + 0.015
    assert eff.loc["A", "estimate"] == pytest.approx(1.115)
    assert eff.loc["B", "estimate"] == pytest.approx(0.6 + 0.01)  # + mean seed term of B
    assert eff.loc["A:B", "estimate"] == pytest.approx(0.1)  # Yates: half of 0.2
    assert eff.loc["A", "contrast"] == "hi - lo"
    per_seed_a = np.array([1.1 + 0.01 * s for s in range(4)])
    _, lo, hi = t_interval(per_seed_a)
    assert eff.loc["A", "ci_low"] == pytest.approx(lo) and eff.loc["A", "ci_high"] == pytest.approx(hi)


def test_factorial_general_levels():
    data, cells = _factorial_data()
    cells3 = pd.concat([cells, pd.DataFrame({"arm": ["a2b0", "a2b1"], "A": ["mid", "mid"],
                                              "B": ["x", "y"]})], ignore_index=True)
    extra = pd.DataFrame([{"arm": arm, "seed": s, "val_accuracy": 90.5 + 0.5 * b}
                          for arm, b in (("a2b0", 0), ("a2b1", 1)) for s in range(4)])
    eff = factorial_effects(pd.concat([data, extra]), cells3)
    inter = eff[(eff["term"] == "A:B") & (eff["contrast"] == "(hi - lo) x (y - x)")]
    assert inter["estimate"].iloc[0] == pytest.approx(0.2)  # full difference of differences
    main = eff[(eff["term"] == "A") & (eff["contrast"] == "mid - lo")]
    # mid cells carry no seed terms; lo cells carry the noise and, in the b=1 cell, the
    # 0.02 * (s % 2) term (mean 0.01, averaged over B: 0.005)
    assert main["estimate"].iloc[0] == pytest.approx(0.5 - np.mean([0.0, 0.1, -0.1, 0.05]) - 0.005)
    with pytest.raises(ConfigError, match="every combination"):
        factorial_effects(pd.concat([data, extra]), cells3.iloc[:5])


def test_cell_means():
    data, cells = _factorial_data()
    m = cell_means(data, cells, "A", "B")
    assert m["x"].tolist() == ["lo", "hi", "lo", "hi"] and m["trace"].tolist() == ["x", "x", "y", "y"]
    assert m["mean"].iloc[0] == pytest.approx(90 + np.mean([0.0, 0.1, -0.1, 0.05]))
    with pytest.raises(ConfigError):
        cell_means(data, cells, "A", "A")
