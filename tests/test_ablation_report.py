"""Ablation report writers and plot data objects."""

from __future__ import annotations

import pandas as pd
import pytest

from nas_attn.ablation.report import to_markdown, write_csv, write_markdown
from nas_attn.ablation.stats import analyze, cell_means, factorial_effects
from nas_attn.errors import ConfigError
from nas_attn.viz.ablation_plots import (
    ForestData,
    InteractionData,
    forest_data,
    interaction_data,
    plot_forest,
    plot_interaction,
)

DATA = pd.DataFrame([
    {"arm": a, "seed": s, "val_accuracy": v, "flops": f, "params": 100.0}
    for a, vals, f in (("base", (90.0, 91.0, 90.5), 1000.0), ("eca", (90.0, 91.2, 90.4), 990.0),
                       ("cbam", (92.0, 93.1, 92.4), 1100.0))
    for s, v in enumerate(vals)])


@pytest.fixture
def results():
    return analyze(DATA, descriptions={"eca": "ECA instead of SE", "cbam": "CBAM | instead of SE"})


def test_markdown_report(results, tmp_path):
    md = to_markdown(results, title="SE ablation", skipped=[("swap:pam (PAM ...)", "C % 8")],
                     notes=["n1"])
    assert md.startswith("# SE ablation\n")
    for v in results["verdict"]:
        assert f"- {v}" in md
    assert "| arm | n | mean % | Δ pp [95% CI] |" in md
    assert "CBAM | instead" in md  # the verdict keeps the text; the table escapes pipes
    table = md.split("## Arms")[1]
    eca = next(line for line in table.splitlines() if line.startswith("| eca "))
    r = results.iloc[1]
    assert f"{r['diff_mean']:+.1f} [{r['diff_ci_low']:+.1f}, {r['diff_ci_high']:+.1f}]" in eca
    assert "| -1.0 |" in eca  # FLOPs %
    assert "## Skipped (cannot be built)" in md and "- swap:pam (PAM ...): C % 8" in md
    p = write_markdown(tmp_path / "r.md", results, title="SE ablation")
    assert p.read_text(encoding="utf-8").startswith("# SE ablation")


def test_csv_roundtrip(results, tmp_path):
    back = pd.read_csv(write_csv(results, tmp_path / "r.csv"))
    assert back["arm"].tolist() == ["base", "eca", "cbam"]
    assert back["diff_mean"].iloc[1] == pytest.approx(results["diff_mean"].iloc[1])


def test_forest_data_exact(results):
    fd = forest_data(results)
    r = results.iloc[1:]
    assert fd == ForestData(
        labels=("ECA instead of SE", "CBAM | instead of SE"),
        diffs=tuple(r["diff_mean"]), ci_low=tuple(r["diff_ci_low"]),
        ci_high=tuple(r["diff_ci_high"]), p_holm=tuple(r["p_holm"]),
        significant=tuple(bool(v) for v in r["significant"]), metric="val_accuracy")
    assert fd.diffs[0] == pytest.approx((0.0 + 0.2 - 0.1) / 3)  # pp, paired per seed
    fig = plot_forest(fd)
    xs = sorted(x for tr in fig.data for x in tr.x)
    assert xs == sorted(fd.diffs)


def test_interaction_data_exact():
    cells = pd.DataFrame({"arm": ["base", "eca", "cbam"], "A": ["se", "eca", "se"],
                          "B": ["p", "p", "q"]})
    with pytest.raises(ConfigError, match="every combination"):
        factorial_effects(DATA, cells)
    cells = pd.DataFrame({"arm": ["base", "eca", "cbam", "base"], "A": ["se", "eca", "se", "eca"],
                          "B": ["p", "p", "q", "q"]})
    means = cell_means(DATA, cells, "A", "B")
    data = interaction_data(means, "A", "B")
    assert data == InteractionData(
        "A", "B", ("se", "eca"), ("p", "q"),
        means=((90.5, pytest.approx(90.5333333333)), (pytest.approx(92.5), 90.5)),
        ci_low=data.ci_low, ci_high=data.ci_high)
    assert data.ci_low[0][0] == pytest.approx(means["ci_low"].iloc[0])
    fig = plot_interaction(data)
    assert [tr.name for tr in fig.data] == ["B=p", "B=q"]
    assert list(fig.data[0].x) == ["se", "eca"]
