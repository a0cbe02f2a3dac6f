"""The one-shot run's view: predicted against confirmed accuracy of the confirmed set.

A one-shot run (docs/one-shot.md) confirms the predicted front by training it stand-alone;
each confirmed trial carries its supernet prediction (user attr ``predicted_val_accuracy``).
:func:`predicted_vs_confirmed` is the pure data step (with Spearman's rho and Kendall's tau of
the confirmed set: how far the supernet's order held among the architectures it picked);
:func:`predicted_figure` draws it. A run without predictions has no such view (None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas_attn.objectives import ACCURACY

PREDICTED = "predicted_" + ACCURACY


@dataclass(frozen=True)
class PredictedVsConfirmed:
    numbers: tuple[int, ...]  # trial numbers of the confirmed set (COMPLETE, not reused)
    predicted: tuple[float, ...]
    confirmed: tuple[float, ...]
    spearman: float | None  # None: fewer than two trials, or a constant side
    kendall: float | None

    def caption(self) -> str:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        return (f"{len(self.numbers)} confirmed architecture(s): Spearman's rho "
                f"{f(self.spearman)}, Kendall's tau {f(self.kendall)}")


def rank_correlations(a: Sequence[float], b: Sequence[float]) -> tuple[float | None,
                                                                        float | None]:
    """(Spearman's rho, Kendall's tau-b) of two equally long sequences; None where undefined
    (fewer than two values, or one side constant)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None, None
    from scipy.stats import kendalltau, spearmanr

    rho = float(spearmanr(a, b).statistic)
    tau = float(kendalltau(a, b).statistic)
    return (rho if math.isfinite(rho) else None), (tau if math.isfinite(tau) else None)


def predicted_vs_confirmed(study: Any) -> PredictedVsConfirmed | None:
    """The confirmed set of a one-shot run's study (None when no trial has a prediction)."""
    from optuna.trial import TrialState

    names = study.user_attrs.get("objectives") or []
    if ACCURACY not in names:
        return None
    i = names.index(ACCURACY)
    rows = [(t.number, float(t.user_attrs[PREDICTED]), float(t.values[i]))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if PREDICTED in t.user_attrs and t.values]
    if not rows:
        return None
    numbers, pred, conf = (tuple(c) for c in zip(*rows, strict=True))
    rho, tau = rank_correlations(pred, conf)
    return PredictedVsConfirmed(numbers, pred, conf, rho, tau)


def predicted_figure(d: PredictedVsConfirmed) -> Any:
    """Scatter of confirmed (stand-alone) against predicted (supernet) accuracy, the
    diagonal and the rank correlations in the title."""
    import plotly.graph_objects as go

    fig = go.Figure()
    lo = min(*d.predicted, *d.confirmed)
    hi = max(*d.predicted, *d.confirmed)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", meta="diagonal",
                             line={"dash": "dot", "color": "#999"}, name="predicted = confirmed",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=list(d.predicted), y=list(d.confirmed), mode="markers", meta="trials",
        name="confirmed trials", marker={"size": 10, "color": "#1f77b4"},
        text=[f"trial {n}<br>predicted {p:.4f}<br>confirmed {c:.4f}"
              for n, p, c in zip(d.numbers, d.predicted, d.confirmed, strict=True)],
        hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=d.caption(), xaxis_title="predicted accuracy (supernet)",
                      yaxis_title="confirmed accuracy (stand-alone)", height=420,
                      margin={"t": 60, "l": 60, "r": 20, "b": 50})
    return fig
