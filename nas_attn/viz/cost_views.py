"""The Pareto plot drawn in a second cost: latency as well as FLOPs (or FLOPs as well as latency).

FLOPs hide what attention costs in time (docs/latency.md), so a run whose trials record both
costs gets the front drawn twice. The second view plots every finished trial at its other cost
(a latency table's prediction when the study names one, see docs/latency.md) and draws the
front in that plane: the run's own front when that cost is one of its objectives, else the
front of accuracy against that cost among COMPLETE trials, which is the set a user choosing by
that cost would look at. Pure data, like :mod:`nas_attn.viz.data`; drawn by
:func:`nas_attn.viz.plots.pareto_figure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nas_attn.objectives import FLOPS, LATENCY, Objective
from nas_attn.viz.data import FINISHED, ParetoData, TrialRecord, pareto_data, plotted_axes


def other_cost(recs: Sequence[TrialRecord], objectives: Sequence[Objective]
               ) -> Objective | None:
    """``latency_ms`` when the plotted cost is another and some finished trial records it;
    ``flops`` when the plotted cost is ``latency_ms``; None when no trial records it."""
    _, cost = plotted_axes(objectives)
    name = FLOPS if cost.name == LATENCY else LATENCY
    if any(name in r.attrs for r in recs if r.state in FINISHED):
        return Objective(name, "minimize")
    return None


def pareto_in(recs: Sequence[TrialRecord], objectives: Sequence[Objective], x: Objective
              ) -> ParetoData:
    """The Pareto plot's data with ``x`` (a cost every trial may record) on the cost axis."""
    acc, _ = plotted_axes(objectives)
    names = [o.name for o in objectives]
    front_objs = tuple(objectives) if x.name in names else (acc, x)
    moved = []
    for r in recs:
        values = r.values
        if values is not None and x.name not in values and x.name in r.attrs:
            values = {**values, x.name: r.attrs[x.name]}
        moved.append(dataclasses.replace(r, cost=r.attrs.get(x.name), values=values))
    return dataclasses.replace(pareto_data(moved, front_objs), x=x)
