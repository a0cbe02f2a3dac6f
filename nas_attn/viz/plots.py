"""Drawing step of the dashboard: each function turns one data object of
:mod:`nas_attn.viz.data` into a plotly ``Figure``. They never show or save anything.

Every trace that draws trials carries ``meta="trials"`` (the front line and stop markers carry
other tags), so a reader of the figure (the browser test, a user's script) can count drawn
trials without knowing the trace layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nas_attn.viz.data import (
    COMPLETE,
    FAIL,
    PRUNED,
    AttributionData,
    Curve,
    HypervolumeData,
    ParallelData,
    ParetoData,
)

COLORS = {COMPLETE: "#1f77b4", PRUNED: "#ff7f0e", FAIL: "#d62728", "front": "#2ca02c"}
SYMBOLS = {COMPLETE: "circle", PRUNED: "diamond-open", FAIL: "x"}
_HOVER = "%{text}<extra></extra>"


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 14, "color": "#666"})
    return fig


def _scale_menu(axes: Sequence[str], x: float = 1.0, y: float = 1.16) -> dict[str, Any]:
    """Buttons that switch the given axes between a linear and a log scale."""
    def args(kind: str) -> list[dict[str, str]]:
        return [{f"{a}.type": kind for a in axes}]

    return {"type": "buttons", "direction": "right", "x": x, "y": y, "xanchor": "right",
            "yanchor": "top", "showactive": True,
            "buttons": [{"label": "linear", "method": "relayout", "args": args("linear")},
                        {"label": "log", "method": "relayout", "args": args("log")}]}


def pareto_figure(d: ParetoData) -> go.Figure:
    """Accuracy vs cost: COMPLETE, PRUNED (at their last accuracy) and the front as a step
    line in the main panel; trials without an accuracy (FAIL) on a strip under it."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14],
                        vertical_spacing=0.03)
    placed = [p for p in d.points if p.y is not None]
    strip = [p for p in d.points if p.y is None]
    for state in (COMPLETE, PRUNED, FAIL):
        pts = [p for p in placed if p.state == state]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.x for p in pts], y=[p.y for p in pts], mode="markers", name=state,
                text=[p.text for p in pts], customdata=[p.number for p in pts],
                hovertemplate=_HOVER, meta="trials", legendgroup=state,
                marker={"color": COLORS[state], "symbol": SYMBOLS[state], "size": 9,
                        "opacity": 0.9 if state == COMPLETE else 0.7}), row=1, col=1)
        pts = [p for p in strip if p.state == state]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.x for p in pts], y=[0] * len(pts), mode="markers",
                name=f"{state} (no accuracy)", text=[p.text for p in pts],
                customdata=[p.number for p in pts], hovertemplate=_HOVER, meta="trials",
                legendgroup=state,
                marker={"color": COLORS[state], "symbol": SYMBOLS[state], "size": 9}),
                row=2, col=1)
    by_number = {p.number: p for p in d.points}
    front = [by_number[n] for n in d.front]
    if front:
        fig.add_trace(go.Scatter(
            x=[p.x for p in front], y=[p.y for p in front], mode="lines", name="Pareto front",
            line={"color": COLORS["front"], "shape": "hv", "width": 2}, hoverinfo="skip",
            meta="front"), row=1, col=1)
    fig.update_yaxes(title_text=d.y.name, row=1, col=1)
    fig.update_yaxes(showticklabels=False, range=[-1, 1], title_text="no acc.",
                     fixedrange=True, row=2, col=1)
    fig.update_xaxes(title_text=d.x.name, row=2, col=1)
    notes = [f"{len(d.front)} trial(s) on the front"]
    if d.unplaced:
        notes.append(f"{len(d.unplaced)} finished trial(s) without a {d.x.name} (not drawn)")
    fig.update_layout(
        title={"text": f"Pareto front: {d.y.name} vs {d.x.name}"}, height=560,
        hovermode="closest", updatemenus=[_scale_menu(("xaxis", "xaxis2"))],
        legend={"orientation": "h", "y": -0.12},
        annotations=[*fig.layout.annotations,
                     {"text": "; ".join(notes), "showarrow": False, "xref": "paper",
                      "yref": "paper", "x": 0, "y": 1.03, "xanchor": "left"}],
        margin={"t": 100})
    if not d.points:
        _empty(fig, "no finished trial yet")
    return fig


def hypervolume_figure(d: HypervolumeData) -> go.Figure:
    """Hypervolume of the COMPLETE trials after each finished trial (left) and against the
    compute spent (right; buttons switch between epochs and training seconds)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("over trials", "over compute spent"))
    ref = ", ".join(f"{o.name}={v:.6g}" for o, v in zip(d.objectives, d.reference, strict=False))
    fig.update_layout(title={"text": f"Hypervolume (reference point: {ref or 'n/a'})"},
                      height=420, showlegend=False)
    if not d.numbers:
        return _empty(fig, "no finished trial yet")
    line = {"color": COLORS["front"], "shape": "hv"}
    fig.add_trace(go.Scatter(x=list(d.numbers), y=list(d.hypervolume), mode="lines+markers",
                             line=line, name="by trial", meta="hv-trials",
                             hovertemplate="trial %{x}<br>HV %{y:.6g}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=list(d.epochs), y=list(d.hypervolume), mode="lines+markers",
                             line=line, name="by epochs", meta="hv-epochs",
                             hovertemplate="%{x} epochs<br>HV %{y:.6g}<extra></extra>"),
                  row=1, col=2)
    fig.add_trace(go.Scatter(x=list(d.seconds), y=list(d.hypervolume), mode="lines+markers",
                             line=line, name="by seconds", meta="hv-seconds", visible=False,
                             hovertemplate="%{x:.1f} s<br>HV %{y:.6g}<extra></extra>"),
                  row=1, col=2)
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text="cumulative epochs trained", row=1, col=2)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="hypervolume", row=1, col=1)
    fig.update_layout(updatemenus=[{
        "type": "buttons", "direction": "right", "x": 0.56, "y": 1.22, "xanchor": "left",
        "buttons": [
            {"label": "epochs", "method": "update",
             "args": [{"visible": [True, True, False]},
                      {"xaxis2.title.text": "cumulative epochs trained"}]},
            {"label": "seconds", "method": "update",
             "args": [{"visible": [True, False, True]},
                      {"xaxis2.title.text": "cumulative training seconds"}]}]}])
    return fig


def _none_to_nan(m: Sequence[Sequence[float | None]]) -> list[list[float]]:
    return [[math.nan if v is None else v for v in row] for row in m]


def attribution_figure(d: AttributionData) -> go.Figure:
    """Two heatmaps over (stage · position) x module: mean accuracy and mean cost of the
    COMPLETE trials; each cell's text is how many trials it averages."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=("mean accuracy", f"mean {d.cost_name}"))
    height = max(320, 60 + 34 * len(d.rows))
    fig.update_layout(title={"text": "Attribution: module choice per stage and position"},
                      height=height)
    if not d.rows:
        return _empty(fig, "no COMPLETE trial with a spec yet")
    counts = [[str(n) if n else "" for n in row] for row in d.count]
    custom = [list(row) for row in d.count]
    for col, (m, scale, bar_x, fmt) in enumerate(
            ((d.accuracy, "Viridis", 0.42, ".4f"), (d.cost, "Cividis", 1.0, ".4s")), start=1):
        fig.add_trace(go.Heatmap(
            z=_none_to_nan(m), x=list(d.cols), y=list(d.rows), text=counts, customdata=custom,
            texttemplate="%{text}", colorscale=scale, colorbar={"x": bar_x, "len": 0.9},
            hovertemplate=("%{y}<br>%{x}<br>%{z:" + fmt + "}<br>n=%{customdata}"
                           "<extra></extra>"), meta="attribution", hoverongaps=False),
            row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    return fig


def parallel_figure(d: ParallelData) -> go.Figure:
    """Parallel coordinates of the stage decisions of COMPLETE trials, coloured by accuracy."""
    fig = go.Figure()
    fig.update_layout(title={"text": "Choices of the COMPLETE trials (colour: accuracy)"},
                      height=460)
    if not d.numbers:
        return _empty(fig, "no COMPLETE trial with a spec yet")
    dims = []
    for dim in d.dimensions:
        entry: dict[str, Any] = {"label": dim.label, "values": list(dim.values)}
        if dim.ticktext is not None:
            entry["tickvals"] = list(range(len(dim.ticktext)))
            entry["ticktext"] = list(dim.ticktext)
        dims.append(entry)
    fig.add_trace(go.Parcoords(
        dimensions=dims, meta="parallel",
        line={"color": list(d.color), "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": d.color_name}}}))
    fig.update_layout(margin={"l": 80, "r": 80, "t": 90})
    return fig


def curves_figure(curves: Sequence[Curve], accuracy_name: str = "val_accuracy") -> go.Figure:
    """Accuracy per epoch of every trial; a cross where early stopping ended a PRUNED trial."""
    fig = go.Figure()
    fig.update_layout(title={"text": "Learning curves (x: where early stopping stopped a trial)"},
                      height=440, hovermode="closest", xaxis_title="epoch",
                      yaxis_title=accuracy_name)
    if not curves:
        return _empty(fig, "no per-epoch values recorded yet")
    for state in (COMPLETE, PRUNED):
        first = True
        for c in curves:
            if c.state != state or not c.epochs:
                continue
            fig.add_trace(go.Scatter(
                x=list(c.epochs), y=list(c.accuracy), mode="lines+markers", name=state,
                marker={"size": 4},
                legendgroup=state, showlegend=first, meta="curve",
                line={"color": COLORS[state], "width": 1.5 if state == COMPLETE else 1},
                opacity=0.85 if state == COMPLETE else 0.55,
                hovertemplate=f"#{c.number} {state}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"))
            first = False
    stops = [c for c in curves if c.stopped_at is not None and c.stop_accuracy is not None]
    if stops:
        fig.add_trace(go.Scatter(
            x=[c.stopped_at for c in stops], y=[c.stop_accuracy for c in stops],
            mode="markers", name="stopped here", meta="stops",
            marker={"symbol": "x", "size": 10, "color": COLORS[FAIL]},
            text=[f"#{c.number} stopped after epoch {c.stopped_at}" for c in stops],
            hovertemplate=_HOVER))
    return fig
