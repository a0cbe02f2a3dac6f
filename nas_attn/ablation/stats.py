"""Statistics of an ablation over paired seeds (numpy/scipy only, pure functions).

Every arm is trained with the same seeds as the base, so an arm is compared with the base by
the per-seed differences d_s = y_arm,s - y_base,s (a paired design: seed-to-seed variance of the
data order and initialisation cancels). Per arm we report:

- mean and 95% t-interval of the metric: mean ± t_{1-α/2, n-1} · s / √n;
- paired difference: mean, t-interval, paired t-test p (two-sided), Wilcoxon signed-rank p
  (scipy; all-zero differences give p = 1, fewer than 2 pairs give NaN);
- Holm's step-down correction over the arms (family = all non-base arms with a p-value);
- effect size Cohen's d_z = mean(d) / sd(d) and optionally Hedges' g_z = J(n-1) · d_z with the
  exact J(df) = Γ(df/2) / (√(df/2) · Γ((df-1)/2)) (Hedges 1981);
- FLOPs and parameter deltas vs the base (absolute and %);
- the seeds needed to detect the observed |mean(d)| with the observed sd(d) by a two-sided
  paired t-test at α = 0.05 with power 0.8: the smallest n with
  P(|T| > t_{1-α/2, n-1}) ≥ 0.8 where T ~ noncentral t(df = n-1, nc = d_z · √n)
  (``scipy.stats.nct``). This "observed power" is a planning hint, not evidence: it takes the
  noisy observed effect at face value. An arm with more seeds needed than it has is flagged.

Accuracies given as fractions (every value in [0, 1]) are converted to percent, so differences
are in percentage points (pp); pass ``as_percent`` to decide explicitly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from nas_attn.errors import ConfigError

METRICS = ("test_accuracy", "val_accuracy")
COST_COLUMNS = ("flops", "params")


# ---------------------------------------------------------------------------------------------
# building blocks


def t_interval(x: Sequence[float] | np.ndarray, confidence: float = 0.95
               ) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval of the mean; low/high NaN for fewer than 2 values."""
    a = np.asarray(x, dtype=float)
    n = a.size
    if n == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if n < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * a.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1); NaN entries stay NaN and are
    not counted in the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def hedges_j(df: int) -> float:
    """Hedges' exact small-sample correction J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2))."""
    if df < 2:
        return math.nan
    return math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)


@dataclass(frozen=True)
class Paired:
    """Paired comparison of an arm with the base over ``n`` common seeds."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    t_p: float
    wilcoxon_p: float
    d_z: float


def paired(diffs: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Paired:
    """Paired t-test, t-interval, Wilcoxon signed-rank test and d_z of per-seed differences.

    Degenerate cases, explicitly: n < 2 gives NaN interval and p-values; all differences equal
    to zero give p = 1 for both tests and d_z = 0; a constant non-zero difference (sd 0) gives
    t_p = 0, d_z = ±inf and the Wilcoxon p of its signs.
    """
    d = np.asarray(diffs, dtype=float)
    n = d.size
    mean, lo, hi = t_interval(d, confidence)
    if n < 2:
        return Paired(n, mean, math.nan, lo, hi, math.nan, math.nan, math.nan)
    if np.all(d == 0):
        return Paired(n, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)
    if np.ptp(d) == 0:  # constant: the float sd can be 1e-17 rather than 0
        return Paired(n, float(d[0]), 0.0, float(d[0]), float(d[0]), 0.0,
                      float(stats.wilcoxon(d).pvalue), math.copysign(math.inf, d[0]))
    sd = float(d.std(ddof=1))
    if sd == 0:
        t_p = 0.0
        d_z = math.copysign(math.inf, mean)
    else:
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
        d_z = mean / sd
    w_p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return Paired(n, mean, sd, lo, hi, t_p, w_p, d_z)


def paired_power(d_z: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test with n pairs for the standardized effect d_z."""
    if n < 2:
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(d_z) * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(mean_diff: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8,
                 max_n: int = 1_000_000) -> int | None:
    """Smallest number of paired seeds (at least 2) for which a two-sided paired t-test at
    ``alpha`` detects ``mean_diff`` with ``power``, given the per-seed sd of the differences.
    None when it cannot (zero difference, or more than ``max_n`` seeds)."""
    if not (math.isfinite(mean_diff) and math.isfinite(sd_diff)) or mean_diff == 0:
        return None
    if sd_diff == 0:
        return 2
    d_z = abs(mean_diff) / sd_diff
    if paired_power(d_z, 2, alpha) >= power:
        return 2
    lo, hi = 2, 4  # power(lo) < target; grow hi until power(hi) >= target, then bisect
    while paired_power(d_z, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if paired_power(d_z, mid, alpha) >= power else (mid, hi)
    return hi


# ---------------------------------------------------------------------------------------------
# input


def pick_metric(data: pd.DataFrame, metric: str | None) -> str:
    if metric is not None:
        if metric not in data.columns:
            raise ConfigError("metric", metric, "not a column of the results", list(data.columns))
        return metric
    for m in METRICS:
        if m in data.columns:
            return m
    raise ConfigError("metric", None, "no accuracy column in the results", list(METRICS))


def prepare(data: pd.DataFrame, metric: str | None = None, as_percent: bool | None = None
            ) -> tuple[pd.DataFrame, str]:
    """Check the tidy table (columns ``arm``, ``seed``, the metric) and return a copy with the
    metric in percent where it was a fraction, rows with a missing metric dropped."""
    for col in ("arm", "seed"):
        if col not in data.columns:
            raise ConfigError("results", col, "missing column", ["arm", "seed", *METRICS,
                                                                  *COST_COLUMNS])
    metric = pick_metric(data, metric)
    df = data.dropna(subset=[metric]).copy()
    df["arm"] = df["arm"].astype("str")
    dup = df.duplicated(["arm", "seed"])
    if dup.any():
        row = df.loc[dup, ["arm", "seed"]].iloc[0]
        raise ConfigError("results", f"arm={row['arm']}, seed={row['seed']}",
                          "more than one row for an arm and seed")
    vals = df[metric].to_numpy(dtype=float)
    if as_percent is None:
        as_percent = bool(vals.size) and bool(np.all((vals >= 0) & (vals <= 1)))
    if as_percent:
        df[metric] = vals * 100.0
    return df, metric


# ---------------------------------------------------------------------------------------------
# per-arm results


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def verdict(row: Mapping[str, object], decimals: int = 1, alpha: float = 0.05) -> str:
    """One line per arm: ``ECA instead of SE at stage 3: -0.2 pp [-0.6, +0.2], p=0.41 after
    Holm (not significant), -1.3% FLOPs``."""
    f = f"{{:+.{decimals}f}}"
    desc = row["description"]
    if row["arm"] == row.get("base_arm"):
        lo, hi = row["ci_low"], row["ci_high"]
        ci = "" if pd.isna(lo) else f" [{lo:.{decimals}f}, {hi:.{decimals}f}]"
        return f"{desc}: {row['mean']:.{decimals}f}%{ci} (n={row['n']})"
    diff, n = float(row["diff_mean"]), int(row["n_paired"])  # type: ignore[arg-type]
    if n < 2:
        text = (f"{desc}: {f.format(diff)} pp (n={n} paired seed{'s' if n != 1 else ''}: no "
                "interval or test)" if n else f"{desc}: no seed in common with the base")
    else:
        sig = "significant" if row["p_holm"] < alpha else "not significant"  # type: ignore[operator]
        text = (f"{desc}: {f.format(diff)} pp [{f.format(row['diff_ci_low'])}, "
                f"{f.format(row['diff_ci_high'])}], {_fmt_p(float(row['p_holm']))} after "  # type: ignore[arg-type]
                f"Holm ({sig})")
    if "flops_delta_pct" in row and not pd.isna(row["flops_delta_pct"]):
        text += f", {row['flops_delta_pct']:+.1f}% FLOPs"
    if row.get("warning"):
        text += f"; {row['warning']}"
    return text


def analyze(
    data: pd.DataFrame,
    base: str = "base",
    metric: str | None = None,
    descriptions: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    hedges: bool = False,
    as_percent: bool | None = None,
    decimals: int = 1,
) -> pd.DataFrame:
    """One row per arm (base first, then in order of appearance) with the statistics listed in
    the module docstring and a ``verdict`` line. ``descriptions`` maps arm names to the text
    used in verdicts (e.g. ``Design.descriptions``); the arm name is used otherwise."""
    df, metric = prepare(data, metric, as_percent)
    arms = list(dict.fromkeys(df["arm"]))
    if base not in arms:
        raise ConfigError("base", base, "no results for the base arm", arms)
    arms.remove(base)
    arms.insert(0, base)
    descriptions = descriptions or {}
    by_arm = {a: g.set_index("seed")[metric] for a, g in df.groupby("arm", sort=False)}
    base_vals = by_arm[base]
    costs = [c for c in COST_COLUMNS if c in df.columns]
    cost = {c: df.groupby("arm", sort=False)[c].mean() for c in costs}
    rows = []
    for a in arms:
        v = by_arm[a]
        mean, lo, hi = t_interval(v.to_numpy())
        row: dict[str, object] = {
            "arm": a, "description": descriptions.get(a, a), "base_arm": base, "n": int(v.size),
            "mean": mean, "sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
            "ci_low": lo, "ci_high": hi,
        }
        common = v.index.intersection(base_vals.index)
        pr = paired((v.loc[common] - base_vals.loc[common]).to_numpy()) if a != base else None
        row.update({
            "n_paired": pr.n if pr else math.nan, "diff_mean": pr.mean if pr else math.nan,
            "diff_sd": pr.sd if pr else math.nan, "diff_ci_low": pr.ci_low if pr else math.nan,
            "diff_ci_high": pr.ci_high if pr else math.nan, "t_p": pr.t_p if pr else math.nan,
            "wilcoxon_p": pr.wilcoxon_p if pr else math.nan, "d_z": pr.d_z if pr else math.nan,
        })
        if hedges:
            row["g_z"] = pr.d_z * hedges_j(pr.n - 1) if pr and pr.n > 2 else math.nan
        for c in costs:
            val, ref = float(cost[c][a]), float(cost[c][base])
            row[c] = val
            row[f"{c}_delta"] = val - ref
            row[f"{c}_delta_pct"] = 100.0 * (val - ref) / ref if ref else math.nan
        needed = seeds_needed(pr.mean, pr.sd, alpha, power) if pr and pr.n >= 2 else None
        row["seeds_needed"] = needed
        row["underpowered"] = bool(pr and pr.n >= 2 and pr.mean != 0
                                   and (needed is None or needed > pr.n))
        row["warning"] = ""
        if row["underpowered"]:
            assert pr is not None
            row["warning"] = (
                f"too few seeds: separating {abs(pr.mean):.{decimals + 1}f} pp with sd "
                f"{pr.sd:.{decimals + 1}f} needs "
                + (f"~{needed} seeds" if needed else "an impractical number of seeds")
                + f" (have {pr.n})")
        rows.append(row)
    out = pd.DataFrame(rows)
    others = out["arm"] != base
    out["p_holm"] = math.nan
    out.loc[others, "p_holm"] = holm(out.loc[others, "t_p"].to_numpy(dtype=float))
    out["wilcoxon_p_holm"] = math.nan
    out.loc[others, "wilcoxon_p_holm"] = holm(out.loc[others, "wilcoxon_p"].to_numpy(dtype=float))
    out["significant"] = others & (out["p_holm"] < alpha)
    out["seeds_needed"] = out["seeds_needed"].astype("Int64")
    out["n_paired"] = out["n_paired"].astype("Int64")
    out["verdict"] = [verdict(r, decimals, alpha) for r in out.to_dict("records")]
    out.insert(1, "metric", metric)
    return out.drop(columns=["base_arm"])


# ---------------------------------------------------------------------------------------------
# factorial designs


def _cell_matrix(df: pd.DataFrame, cells: pd.DataFrame, metric: str
                 ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """(cells, Y[cell, seed], factors) over the seeds every cell's arm has."""
    factors = [c for c in cells.columns if c != "arm"]
    if not factors:
        raise ConfigError("cells", list(cells.columns), "needs at least one factor column")
    missing = sorted(set(cells["arm"]) - set(df["arm"]))
    if missing:
        raise ConfigError("cells.arm", missing, "no results for these arms", sorted(set(df["arm"])))
    per_arm = {a: g.set_index("seed")[metric] for a, g in df.groupby("arm", sort=False)}
    seeds = None
    for a in cells["arm"]:
        idx = per_arm[a].index
        seeds = idx if seeds is None else seeds.intersection(idx)
    assert seeds is not None
    seeds = seeds.sort_values()
    y = np.array([per_arm[a].loc[seeds].to_numpy(dtype=float) for a in cells["arm"]])
    grid = cells[factors].astype("str")
    levels = [list(dict.fromkeys(grid[f])) for f in factors]
    want = set(itertools.product(*levels))
    have = [tuple(r) for r in grid.itertuples(index=False)]
    if len(set(have)) != len(have) or set(have) != want:
        absent = sorted(want - set(have))
        raise ConfigError("cells", absent or "duplicate cells",
                          "a factorial analysis needs every combination exactly once")
    return grid, y.reshape(len(have), -1), factors


def _effect_row(term: str, kind: str, contrast: str, per_seed: np.ndarray,
                confidence: float) -> dict[str, object]:
    mean, lo, hi = t_interval(per_seed, confidence)
    p = math.nan
    if per_seed.size >= 2:
        if np.ptp(per_seed) == 0:
            p = 1.0 if per_seed[0] == 0 else 0.0
        else:
            p = float(stats.ttest_1samp(per_seed, 0.0).pvalue)
    return {"term": term, "kind": kind, "contrast": contrast, "estimate": mean, "ci_low": lo,
            "ci_high": hi, "p_value": p, "n": int(per_seed.size)}


def factorial_effects(data: pd.DataFrame, cells: pd.DataFrame, metric: str | None = None,
                      confidence: float = 0.95, as_percent: bool | None = None) -> pd.DataFrame:
    """Main effects and interactions of a full factorial, each with a t-interval over seeds.

    ``cells`` has a column ``arm`` and one column per factor (``designs.cells_frame``). Every
    estimate is computed per seed from that seed's cell values and then averaged, so the
    interval reflects seed-to-seed variation.

    - Every factor at 2 levels (a 2^k design): the classic contrasts, first level coded -1 and
      second +1; effect = (Σ_c coef_c · y_c) / 2^(k-1) for every main effect and interaction
      (for A:B that is half the difference of differences, Yates' convention).
    - Otherwise: per-level mean differences against the first level of each factor (averaged
      over the other factors), and for each pair of factors the difference of differences
      y(a, b) - y(a, b0) - y(a0, b) + y(a0, b0) averaged over the remaining factors.
    """
    df, metric = prepare(data, metric, as_percent)
    grid, y, factors = _cell_matrix(df, cells, metric)
    levels = {f: list(dict.fromkeys(grid[f])) for f in factors}
    rows = []
    if all(len(levels[f]) == 2 for f in factors):
        k = len(factors)
        coded = {f: np.where(grid[f].to_numpy() == levels[f][1], 1.0, -1.0) for f in factors}
        for size in range(1, k + 1):
            for combo in itertools.combinations(factors, size):
                coef = np.prod([coded[f] for f in combo], axis=0)
                per_seed = coef @ y / 2 ** (k - 1)
                contrast = (f"{levels[combo[0]][1]} - {levels[combo[0]][0]}" if size == 1
                            else "interaction (±1 coding)")
                rows.append(_effect_row(":".join(combo), "main" if size == 1 else "interaction",
                                        contrast, per_seed, confidence))
        return pd.DataFrame(rows)

    def mean_where(mask: np.ndarray) -> np.ndarray:
        return y[mask].mean(axis=0)

    col = {f: grid[f].to_numpy() for f in factors}
    for f in factors:
        ref = levels[f][0]
        for lv in levels[f][1:]:
            per_seed = mean_where(col[f] == lv) - mean_where(col[f] == ref)
            rows.append(_effect_row(f, "main", f"{lv} - {ref}", per_seed, confidence))
    for f, g in itertools.combinations(factors, 2):
        f0, g0 = levels[f][0], levels[g][0]
        for a in levels[f][1:]:
            for b in levels[g][1:]:
                per_seed = (mean_where((col[f] == a) & (col[g] == b))
                            - mean_where((col[f] == a) & (col[g] == g0))
                            - mean_where((col[f] == f0) & (col[g] == b))
                            + mean_where((col[f] == f0) & (col[g] == g0)))
                rows.append(_effect_row(f"{f}:{g}", "interaction",
                                        f"({a} - {f0}) x ({b} - {g0})", per_seed, confidence))
    return pd.DataFrame(rows)


def cell_means(data: pd.DataFrame, cells: pd.DataFrame, x: str, trace: str,
               metric: str | None = None, confidence: float = 0.95,
               as_percent: bool | None = None) -> pd.DataFrame:
    """Mean and t-interval (over seeds) of the metric for each (x level, trace level), averaged
    over any other factor: the data of an interaction plot. Levels keep the cells' order."""
    df, metric = prepare(data, metric, as_percent)
    grid, y, factors = _cell_matrix(df, cells, metric)
    for name, f in (("x", x), ("trace", trace)):
        if f not in factors:
            raise ConfigError(name, f, "not a factor of the cells", factors)
    if x == trace:
        raise ConfigError("trace", trace, "must differ from x", [f for f in factors if f != x])
    rows = []
    for b in dict.fromkeys(grid[trace]):
        for a in dict.fromkeys(grid[x]):
            mask = (grid[x].to_numpy() == a) & (grid[trace].to_numpy() == b)
            mean, lo, hi = t_interval(y[mask].mean(axis=0), confidence)
            rows.append({"x": a, "trace": b, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "n": int(y.shape[1])})
    return pd.DataFrame(rows).astype({"x": "str", "trace": "str"})
