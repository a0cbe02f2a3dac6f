"""Ablation plots: a forest plot of paired differences and interaction plots of factorials.

Split as in optuna.visualization: a pure step builds a small frozen data object from the
statistics tables (tests compare it exactly), a drawing step turns it into a plotly Figure. The
figures are returned, never shown or saved. plotly is imported only by the drawing functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go

SIGNIFICANT_COLOR = "#d62728"
NOT_SIGNIFICANT_COLOR = "#7f7f7f"


@dataclass(frozen=True)
class ForestData:
    """One row per non-base arm, in the results' order: label, mean paired difference (pp)
    and its CI, Holm p-value and significance."""

    labels: tuple[str, ...]
    diffs: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    p_holm: tuple[float, ...]
    significant: tuple[bool, ...]
    metric: str


def forest_data(results: pd.DataFrame, label: str = "description") -> ForestData:
    """From :func:`nas_attn.ablation.stats.analyze` results (the base row is left out)."""
    rows = results[results["diff_mean"].notna()]
    return ForestData(
        labels=tuple(str(v) for v in rows[label]),
        diffs=tuple(float(v) for v in rows["diff_mean"]),
        ci_low=tuple(float(v) for v in rows["diff_ci_low"]),
        ci_high=tuple(float(v) for v in rows["diff_ci_high"]),
        p_holm=tuple(float(v) for v in rows["p_holm"]),
        significant=tuple(bool(v) for v in rows["significant"]),
        metric=str(results["metric"].iloc[0]) if len(results) else "",
    )


def plot_forest(data: ForestData) -> go.Figure:
    """Horizontal forest plot: one row per arm (first arm on top), a point at the mean paired
    difference with its 95% CI, red when significant after Holm, a dashed line at zero."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for sig, color, name in ((True, SIGNIFICANT_COLOR, "significant (Holm)"),
                             (False, NOT_SIGNIFICANT_COLOR, "not significant")):
        idx = [i for i, s in enumerate(data.significant) if s is sig]
        if not idx:
            continue
        plus = [0.0 if math.isnan(data.ci_high[i]) else data.ci_high[i] - data.diffs[i]
                for i in idx]
        minus = [0.0 if math.isnan(data.ci_low[i]) else data.diffs[i] - data.ci_low[i]
                 for i in idx]
        fig.add_trace(go.Scatter(
            x=[data.diffs[i] for i in idx], y=[data.labels[i] for i in idx], mode="markers",
            name=name, marker={"color": color, "size": 9},
            error_x={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
                     "color": color},
            customdata=[data.p_holm[i] for i in idx],
            hovertemplate="%{y}<br>%{x:+.2f} pp<br>p (Holm) = %{customdata:.3g}<extra></extra>",
        ))
    fig.add_vline(x=0, line_dash="dash", line_color="black")
    fig.update_layout(
        title=f"Paired difference vs base ({data.metric}, pp, 95% CI)",
        xaxis_title="difference vs base (pp)", template="plotly_white",
        yaxis={"categoryorder": "array", "categoryarray": list(reversed(data.labels))},
        height=max(250, 60 + 28 * len(data.labels)),
    )
    return fig


@dataclass(frozen=True)
class InteractionData:
    """Cell means (over seeds, averaged over other factors) for an interaction plot: one line
    per level of ``trace`` across the levels of ``x``."""

    x: str
    trace: str
    x_levels: tuple[str, ...]
    trace_levels: tuple[str, ...]
    means: tuple[tuple[float, ...], ...]  # [trace level][x level]
    ci_low: tuple[tuple[float, ...], ...]
    ci_high: tuple[tuple[float, ...], ...]


def interaction_data(means: pd.DataFrame, x: str, trace: str) -> InteractionData:
    """From :func:`nas_attn.ablation.stats.cell_means` output (columns x, trace, mean, CI)."""
    xs = tuple(dict.fromkeys(str(v) for v in means["x"]))
    ts = tuple(dict.fromkeys(str(v) for v in means["trace"]))
    table = {(str(r["trace"]), str(r["x"])): r for r in means.to_dict("records")}

    def grid(col: str) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(float(table[(t, a)][col]) for a in xs) for t in ts)

    return InteractionData(x, trace, xs, ts, grid("mean"), grid("ci_low"), grid("ci_high"))


def plot_interaction(data: InteractionData) -> go.Figure:
    """Lines of the cell means across ``x``, one per ``trace`` level, with 95% CI bars;
    non-parallel lines indicate an interaction."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for t, m, lo, hi in zip(data.trace_levels, data.means, data.ci_low, data.ci_high,
                            strict=True):
        fig.add_trace(go.Scatter(
            x=list(data.x_levels), y=list(m), mode="lines+markers", name=f"{data.trace}={t}",
            error_y={"type": "data", "symmetric": False,
                     "array": [0.0 if math.isnan(h) else h - v for h, v in zip(hi, m, strict=True)],
                     "arrayminus": [0.0 if math.isnan(lw) else v - lw
                                    for lw, v in zip(lo, m, strict=True)]},
        ))
    fig.update_layout(title=f"Interaction: {data.x} x {data.trace}", xaxis_title=data.x,
                      yaxis_title="mean (%)", template="plotly_white")
    return fig
