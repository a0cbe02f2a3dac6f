"""The dashboard's second Pareto view: the same trials at their latency (a study with a latency
table records it) with the front in that plane, or at their FLOPs when latency is the plotted
cost; absent when no trial records the other cost. Compared exactly on a constructed study."""

from __future__ import annotations

import pytest
from test_viz_data import OBJECTIVES, make_run_dir, make_study

from nas_attn.viz import data as vd
from nas_attn.viz.cost_views import other_cost, pareto_in

LATENCY = {0: 2.0, 1: 1.5, 2: 1.0, 3: 1.2, 4: 2.5, 5: 3.0}
OBJS = vd.objectives_of(None, {"objectives": OBJECTIVES})


@pytest.fixture
def recs(tmp_path):
    return vd.records(make_study(f"sqlite:///{tmp_path / 's.db'}", latency=LATENCY), OBJS)


def test_the_front_is_also_drawn_in_latency(recs):
    lat = other_cost(recs, OBJS)
    assert lat == vd.Objective("latency_ms", "minimize")
    d = pareto_in(recs, OBJS, lat)
    assert (d.x, d.y) == (lat, OBJS[0])
    assert [(p.number, p.x, p.y) for p in d.points] == [
        (0, 2.0, 0.80), (1, 1.5, 0.85), (2, 1.0, 0.82), (3, 1.2, 0.6), (4, 2.5, None),
        (5, 3.0, 0.75)]
    # in FLOPs the front is 5, 0, 1; in latency 0 and 5 are dominated by 2
    assert vd.pareto_data(recs, OBJS).front == (5, 0, 1)
    assert d.front == (2, 1)
    assert "latency_ms 1.5" in d.points[1].text


def test_a_latency_objective_gets_its_front_in_flops_too(tmp_path):
    objs = (OBJS[0], vd.Objective("latency_ms", "minimize"))
    study = make_study(f"sqlite:///{tmp_path / 's.db'}", latency=LATENCY)
    recs = vd.records(study, objs)
    flops = other_cost(recs, objs)
    assert flops == vd.Objective("flops", "minimize")
    d = pareto_in(recs, objs, flops)
    assert [(p.number, p.x) for p in d.points][:2] == [(0, 1000.0), (1, 2000.0)]
    assert d.front == (5, 0, 1)  # 2D front of accuracy vs FLOPs among COMPLETE trials


def test_no_second_view_without_the_other_cost(tmp_path):
    from nas_attn.viz.dashboard import build, figures, render_html

    study = make_study(f"sqlite:///{tmp_path / 's.db'}")
    recs = vd.records(study, OBJS)
    assert other_cost(recs, OBJS) is None
    d = build(study, {"objectives": OBJECTIVES})
    assert d.pareto_other is None and "pareto_other" not in figures(d)
    assert 'id="pareto_other"' not in render_html(d)


def test_the_page_draws_both_fronts(tmp_path):
    from nas_attn.viz.dashboard import build, figures, load_run_inputs, render_html

    study, info, _ = load_run_inputs(make_run_dir(tmp_path / "run", latency=LATENCY))
    d = build(study, info)
    figs = figures(d)
    assert list(figs)[:2] == ["pareto", "pareto_other"]
    drawn = [n for t in figs["pareto_other"].data if t.meta == "trials" for n in t.customdata]
    assert sorted(drawn) == [0, 1, 2, 3, 4, 5]
    front = next(t for t in figs["pareto_other"].data if t.meta == "front")
    assert list(front.x) == [1.0, 1.5]
    assert figs["pareto_other"].layout.xaxis2.title.text == "latency_ms"
    page = render_html(d)
    assert 'id="pareto_other"' in page and "Pareto front in latency_ms" in page
