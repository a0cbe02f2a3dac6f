"""Dashboard data steps on a small constructed Optuna study (real SQLite storage), compared
exactly; plus the loader, the HTML page, the CLI and the --serve server (no browser here)."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import optuna
import pytest

from nas_attn.viz import data as vd
from nas_attn.viz import describe, meta

OBJECTIVES = [["val_accuracy", "maximize"], ["flops", "minimize"]]
STUDY = "viz-test"


def _stage(att=None, position="post_bn", conv="standard"):
    return {"attention": att, "position": position, "blocks": "all", "conv": conv,
            "fusion": "none"}


def _spec(*stages):
    return {"backbone": "tiny", "backbone_args": {"width": 16, "blocks": 2}, "num_classes": 10,
            "in_chans": 3, "stages": list(stages)}


SE = {"type": "se", "rd_ratio": 0.0625}
ECA = {"type": "eca", "k_size": "auto"}
SPECS = {
    0: _spec(_stage(SE), _stage(), _stage()),
    1: _spec(_stage(ECA, "post_add"), _stage(SE), _stage(conv={"type": "rfaconv"})),
    2: _spec(_stage(SE), _stage(SE), _stage()),
    3: _spec(_stage(ECA, "mid"), _stage(), _stage()),
    4: _spec(_stage(), _stage(SE, "post_add"), _stage()),
    5: _spec(_stage(), _stage(), _stage()),
}


def _trial_attrs(n, flops, epochs, seconds, **extra):
    return {"run_id": "r1", "spec_hash": f"h{n}", "spec": json.dumps(SPECS[n], sort_keys=True),
            "flops": float(flops), "params": 100.0 + n, "epochs_trained": epochs,
            "train_seconds": seconds, "counts": True, **extra}


def add_trials(study: optuna.Study, uncosted_fail: bool = False,
               latency: dict[int, float] | None = None) -> None:
    """The trials the search runner would leave: COMPLETE, PRUNED and FAIL, with its attrs
    (``latency``: each trial's ``latency_ms`` attr, as a study with a latency table records)."""
    from optuna.trial import TrialState, create_trial

    def _attrs(n, *args, **extra):
        more = {"latency_ms": latency[n]} if latency else {}
        return _trial_attrs(n, *args, **extra, **more)

    def curve(flops, *accs):
        return {str(e): [a, float(flops)] for e, a in enumerate(accs, start=1)}

    trials = [
        create_trial(values=[0.80, 1000.0], user_attrs=_attrs(
            0, 1000, 3, 10.0, last_accuracy=0.80, intermediate=curve(1000, 0.5, 0.7, 0.8))),
        create_trial(values=[0.85, 2000.0], user_attrs=_attrs(
            1, 2000, 3, 11.0, last_accuracy=0.85, intermediate=curve(2000, 0.6, 0.8, 0.85))),
        create_trial(values=[0.82, 3000.0], user_attrs=_attrs(2, 3000, 3, 12.0)),
        create_trial(state=TrialState.PRUNED, user_attrs=_attrs(
            3, 1500, 1, 2.0, last_accuracy=0.6, intermediate=curve(1500, 0.6))),
        create_trial(state=TrialState.FAIL, user_attrs=_attrs(
            4, 2500, 2, 5.0, fail_reason="nonfinite", fail_message="loss is nan")),
        create_trial(values=[0.75, 800.0], user_attrs=_attrs(5, 800, 3, 9.0)),
    ]
    if uncosted_fail:
        trials.append(create_trial(state=TrialState.FAIL, user_attrs={
            "run_id": "r1", "fail_reason": "error", "counts": False}))
    for t in trials:
        study.add_trial(t)


def make_study(storage: str, uncosted_fail: bool = False,
               latency: dict[int, float] | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=storage,
                                directions=["maximize", "minimize"])
    study.set_user_attr("objectives", [n for n, _ in OBJECTIVES])
    add_trials(study, uncosted_fail, latency)
    return study


def make_run_dir(path: Path, uncosted_fail: bool = False,
                 latency: dict[int, float] | None = None) -> Path:
    """A run folder as ``nas-attn search`` writes it: run.json, study.yaml, study.db."""
    path.mkdir(parents=True, exist_ok=True)
    make_study(f"sqlite:///{path / 'study.db'}", uncosted_fail, latency)
    info = {"study_name": STUDY, "run_id": "r1", "storage": f"sqlite:///{path / 'study.db'}",
            "storage_in_run_dir": True, "requested_trials": 6, "seed": 7, "sampler": "tpe",
            "objectives": OBJECTIVES, "versions": {"nas_attn": "0.1.0", "optuna": "5.0.0"},
            "status": "finished", "started_at": "2026-01-01T00:00:00"}
    (path / "run.json").write_text(json.dumps(info))
    (path / "study.yaml").write_text("name: viz-test\nbackbone: tiny\n")
    return path


@pytest.fixture
def study(tmp_path):
    return make_study(f"sqlite:///{tmp_path / 'study.db'}")


@pytest.fixture
def recs(study):
    return vd.records(study, vd.objectives_of(study, {"objectives": OBJECTIVES}))


OBJS = (vd.Objective("val_accuracy", "maximize"), vd.Objective("flops", "minimize"))


def test_objectives_from_run_json_and_from_study(study):
    assert vd.objectives_of(study, {"objectives": OBJECTIVES}) == OBJS
    assert vd.objectives_of(study, None) == OBJS  # the study's "objectives" attr + directions
    three = (*OBJS, vd.Objective("params", "minimize"))
    assert vd.plotted_axes(three) == OBJS
    assert vd.plotted_axes(OBJS[:1]) == (OBJS[0], vd.Objective("flops", "minimize"))


def test_run_meta_names_the_sampler_its_startup_and_what_it_learns_from(study):
    info = {"sampler": "gp", "seed": 7}
    assert meta.run_meta(study, info).sampler == "gp"
    info["options"] = {"sampler": "gp", "startup_trials": 5}
    assert meta.run_meta(study, info).sampler == "gp (5 random startup trials)"
    info["options"]["startup_trials"] = None  # Optuna's default: nothing to say
    assert meta.run_meta(study, info).sampler == "gp"
    info["options"]["learn_from_pruned"] = None  # the default: gp learns, tpe does not
    assert meta.run_meta(study, info).sampler == "gp (learns from stopped trials)"
    info["options"]["startup_trials"] = 5
    assert meta.run_meta(study, info).sampler == (
        "gp (5 random startup trials; learns from stopped trials)")
    info["options"]["learn_from_pruned"] = False
    assert meta.run_meta(study, info).sampler == "gp (5 random startup trials)"
    tpe = {"sampler": "tpe", "options": {"sampler": "tpe", "learn_from_pruned": None}}
    assert meta.run_meta(study, tpe).sampler == "tpe"
    tpe["options"]["learn_from_pruned"] = True
    assert meta.run_meta(study, tpe).sampler == "tpe (learns from stopped trials)"


def test_records(recs):
    assert [(r.number, r.state, r.accuracy, r.cost, r.epochs) for r in recs] == [
        (0, "COMPLETE", 0.80, 1000.0, 3), (1, "COMPLETE", 0.85, 2000.0, 3),
        (2, "COMPLETE", 0.82, 3000.0, 3), (3, "PRUNED", 0.6, 1500.0, 1),
        (4, "FAIL", None, 2500.0, 2), (5, "COMPLETE", 0.75, 800.0, 3)]
    assert recs[0].values == {"val_accuracy": 0.80, "flops": 1000.0}
    assert recs[3].values is None and recs[4].fail_reason == "nonfinite"
    assert recs[0].curve == ((1, 0.5), (2, 0.7), (3, 0.8))
    assert recs[1].spec == SPECS[1] and recs[1].spec_hash == "h1"
    assert vd.state_counts(recs) == {"COMPLETE": 4, "PRUNED": 1, "FAIL": 1}


def test_describe_spec_names_module_position_and_settings():
    assert describe.describe_spec(SPECS[1]) == (
        "tiny(width=16, blocks=2)", "stage0: eca(k_size=auto) @ post_add",
        "stage1: se(rd_ratio=0.0625) @ post_bn",
        "stage2: conv rfaconv")
    stage = {**_stage(SE), "blocks": [1], "fusion": {"type": "sda", "pool": "max"}}
    assert describe.describe_stage(2, stage) == (
        "stage2: se(rd_ratio=0.0625) @ post_bn blocks [1] · fusion sda(pool=max)")
    assert describe.describe_spec(None) == ("(no spec recorded)",)
    wide = {**SPECS[5], "backbone_args": {"width": 8, "blocks": 1}}  # a searched backbone arg
    assert describe.describe_spec(wide)[0] == "tiny(width=8, blocks=1)"


def test_pareto_data(recs):
    d = vd.pareto_data(recs, OBJS)
    assert (d.x, d.y) == (OBJS[1], OBJS[0])
    assert [(p.number, p.state, p.x, p.y) for p in d.points] == [
        (0, "COMPLETE", 1000.0, 0.80), (1, "COMPLETE", 2000.0, 0.85),
        (2, "COMPLETE", 3000.0, 0.82), (3, "PRUNED", 1500.0, 0.6), (4, "FAIL", 2500.0, None),
        (5, "COMPLETE", 800.0, 0.75)]
    assert d.front == (5, 0, 1)  # by increasing cost; 2 is dominated by 1; pruned never enter
    assert d.unplaced == ()
    assert d.points[1].text == (
        "#1 COMPLETE<br>val_accuracy 0.85 · flops 2k<br>epochs 3<br>tiny(blocks=2, width=16)<br>"
        "stage0: eca(k_size=auto) @ post_add<br>stage1: se(rd_ratio=0.0625) @ post_bn<br>"
        "stage2: conv rfaconv")
    assert d.points[4].text.startswith("#4 FAIL<br>val_accuracy - · flops 2.5k<br>epochs 2<br>"
                                       "fail: nonfinite<br>tiny(blocks=2, width=16)<br>stage0: plain")


def test_pareto_counts_a_failure_without_cost(tmp_path):
    s = make_study(f"sqlite:///{tmp_path / 's.db'}", uncosted_fail=True)
    d = vd.pareto_data(vd.records(s, OBJS), OBJS)
    assert len(d.points) == 6 and d.unplaced == (6,)


def test_hypervolume_data(recs):
    d = vd.hypervolume_data(recs, OBJS)
    assert d.reference == (0.0, 2 * 1000.0)  # 2 x the flops of the first COMPLETE trial
    assert d.numbers == (0, 1, 2, 3, 4, 5)
    assert d.epochs == (3, 6, 9, 10, 12, 15)
    assert d.seconds == (10.0, 21.0, 33.0, 35.0, 40.0, 49.0)
    box = 1.0 * 2000.0  # between the reference and the ideal point (accuracy 1, flops 0)
    hv0 = 0.8 * (2000 - 1000) / box  # trials 1 and 2 are not below the reference's flops
    hv5 = hv0 + 0.75 * (1000 - 800) / box
    assert d.hypervolume == pytest.approx((hv0, hv0, hv0, hv0, hv0, hv5), rel=1e-12)
    fixed = vd.hypervolume_data(recs, OBJS, reference=(0.5, 2000.0))
    assert fixed.reference == (0.5, 2000.0)
    assert fixed.hypervolume[-1] == pytest.approx((0.3 * 1000 + 0.25 * 200) / (0.5 * 2000),
                                                  rel=1e-12)


def test_dashboard_takes_the_reference_point_recorded_in_the_study(study):
    from nas_attn.objectives import REFERENCE_ATTR
    from nas_attn.viz.dashboard import build

    assert build(study, {"objectives": OBJECTIVES}).hypervolume.reference == (0.0, 2000.0)
    study.set_user_attr(REFERENCE_ATTR, {"val_accuracy": 0.0, "flops": 5000.0})
    d = build(study, {"objectives": OBJECTIVES})
    assert d.hypervolume.reference == (0.0, 5000.0)
    # front by flops: (0.75, 800), (0.8, 1000), (0.85, 2000); slices up to flops 5000
    area = 0.75 * (1000 - 800) + 0.8 * (2000 - 1000) + 0.85 * (5000 - 2000)
    assert d.hypervolume.hypervolume[-1] == pytest.approx(area / 5000, rel=1e-12)


def test_curves_from_ray_results(tmp_path, study):
    from nas_attn.viz.dashboard import build, ray_curves

    trial_dir = tmp_path / "ray" / "segment-1" / "trial_ab12"
    trial_dir.mkdir(parents=True)
    lines = [{"epoch": e, "val_accuracy": a, "config": {"optuna_number": n, "spec_hash": "h"}}
             for n, e, a in ((2, 1, 0.4), (2, 2, 0.7), (2, 3, 0.82), (0, 1, 0.1))]
    (trial_dir / "result.json").write_text(
        "\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    curves = ray_curves(tmp_path)
    assert curves == {2: ((1, 0.4), (2, 0.7), (3, 0.82)), 0: ((1, 0.1),)}
    d = build(study, {"objectives": OBJECTIVES}, curves=curves)
    by_number = {c.number: c for c in d.curves}
    assert by_number[2].accuracy == (0.4, 0.7, 0.82)
    assert by_number[0].accuracy == (0.5, 0.7, 0.8)  # the storage's own values win


def test_attribution_data(recs):
    d = vd.attribution_data(recs, OBJS)
    assert d.rows == ("stage0 · post_bn", "stage0 · post_add", "stage1 · post_bn",
                      "stage2 · (none)", "stage2 · conv")
    assert d.cols == ("none", "eca", "se", "conv:rfaconv")
    n = None
    expect_acc = (
        (0.75, n, (0.80 + 0.82) / 2, n),
        (0.75, 0.85, n, n),
        ((0.80 + 0.75) / 2, n, (0.85 + 0.82) / 2, n),
        ((0.80 + 0.85 + 0.82 + 0.75) / 4, n, n, n),
        (n, n, n, 0.85),
    )
    assert len(d.accuracy) == len(expect_acc)
    for got, want in zip(d.accuracy, expect_acc, strict=True):
        assert [g is None for g in got] == [w is None for w in want]
        assert [g for g in got if g is not None] == pytest.approx(
            [w for w in want if w is not None], rel=1e-12)
    assert d.cost == ((800.0, n, 2000.0, n), (800.0, 2000.0, n, n), (900.0, n, 2500.0, n),
                      (1700.0, n, n, n), (n, n, n, 2000.0))
    assert d.count == ((1, 0, 2, 0), (1, 1, 0, 0), (2, 0, 2, 0), (4, 0, 0, 0), (0, 0, 0, 1))
    assert d.cost_name == "flops"


def test_parallel_data(recs):
    d = vd.parallel_data(recs, OBJS)
    assert d.numbers == (0, 1, 2, 5)
    assert d.dimensions == (
        vd.Dimension("stage0 attention", (2.0, 0.0, 2.0, 1.0), ("eca", "none", "se")),
        vd.Dimension("stage0 position", (2.0, 1.0, 2.0, 0.0), ("-", "post_add", "post_bn")),
        vd.Dimension("stage1 attention", (0.0, 1.0, 1.0, 0.0), ("none", "se")),
        vd.Dimension("stage1 position", (0.0, 1.0, 1.0, 0.0), ("-", "post_bn")),
        vd.Dimension("stage2 conv", (1.0, 0.0, 1.0, 1.0), ("rfaconv", "standard")),
        vd.Dimension("flops", (1000.0, 2000.0, 3000.0, 800.0)),
        vd.Dimension("val_accuracy", (0.80, 0.85, 0.82, 0.75)),
    )
    assert d.color == (0.80, 0.85, 0.82, 0.75) and d.color_name == "val_accuracy"


def test_curves_data(recs):
    assert vd.curves_data(recs) == (
        vd.Curve(0, "COMPLETE", (1, 2, 3), (0.5, 0.7, 0.8), None, None),
        vd.Curve(1, "COMPLETE", (1, 2, 3), (0.6, 0.8, 0.85), None, None),
        vd.Curve(3, "PRUNED", (1,), (0.6,), 1, 0.6),
    )


def test_table_rows(recs):
    rows = vd.table_rows(recs, front=(5, 0, 1))
    assert [r["state"] for r in rows] == ["COMPLETE *", "COMPLETE *", "COMPLETE", "PRUNED",
                                          "FAIL", "COMPLETE *"]
    assert rows[4] == {"number": 4, "state": "FAIL", "accuracy": None, "cost": 2500.0,
                       "epochs": 2, "seconds": 5.0, "fail_reason": "nonfinite",
                       "architecture": "stage0: plain; stage1: se(rd_ratio=0.0625) @ post_add; "
                                       "stage2: plain", "spec_hash": "h4"}


def test_empty_study_gives_empty_objects(tmp_path):
    s = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}",
                            directions=["maximize", "minimize"])
    recs = vd.records(s, OBJS)
    assert vd.pareto_data(recs, OBJS) == vd.ParetoData(OBJS[1], OBJS[0], (), (), ())
    assert vd.hypervolume_data(recs, OBJS).numbers == ()
    assert vd.attribution_data(recs, OBJS).rows == ()
    assert vd.parallel_data(recs, OBJS).numbers == ()
    assert vd.curves_data(recs) == ()
    from nas_attn.viz.dashboard import build, render_html

    page = render_html(build(s))  # every figure draws an "empty" note instead of failing
    assert "no finished trial yet" in page


# -- figures, page, loader, CLI, server ---------------------------------------------------


def test_figures_draw_every_trial_once(study):
    from nas_attn.viz.dashboard import build, figures

    figs = figures(build(study, {"objectives": OBJECTIVES}))
    assert list(figs) == ["pareto", "hypervolume", "attribution", "parallel", "curves"]
    drawn = [n for t in figs["pareto"].data if t.meta == "trials" for n in t.customdata]
    assert sorted(drawn) == [0, 1, 2, 3, 4, 5]
    front = next(t for t in figs["pareto"].data if t.meta == "front")
    assert list(front.x) == [800.0, 1000.0, 2000.0] and front.line.shape == "hv"
    buttons = figs["pareto"].layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["linear", "log"]
    assert buttons[1].args[0] == {"xaxis.type": "log", "xaxis2.type": "log"}
    stops = next(t for t in figs["curves"].data if t.meta == "stops")
    assert list(stops.x) == [1] and list(stops.y) == [0.6]


def test_run_dir_page_embeds_plotly_once_and_works_offline(tmp_path):
    from nas_attn.viz.dashboard import write_dashboard

    run = make_run_dir(tmp_path / "run")
    out = write_dashboard(run)
    assert out == run / "dashboard.html"
    from plotly.offline import get_plotlyjs

    page = out.read_text()
    assert page.count("* plotly.js v") == 1
    own = page.replace(get_plotlyjs(), "")  # what the dashboard itself adds around plotly.js
    assert len(page) - len(own) == len(get_plotlyjs())
    assert "<script src" not in own and "http" not in own.lower()
    assert page.count('<tr data-state="') == 6
    assert "optuna-dashboard sqlite:///" in page and "viz-test" in page
    assert "name: viz-test" in page  # study.yaml


def test_cli_writes_the_page_and_refuses_a_non_run(tmp_path, capsys):
    from nas_attn.cli import main

    run = make_run_dir(tmp_path / "run")
    out = tmp_path / "x" / "d.html"
    assert main(["dashboard", str(run), "-o", str(out)]) == 0
    assert out.stat().st_size > 1_000_000
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "run.json" in capsys.readouterr().err


def test_serve_options():
    from nas_attn.errors import ConfigError
    from nas_attn.viz.serve import check_options, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ConfigError, match="--port"):
        check_options("127.0.0.1", 70000, 1.0)


def test_server_rebuilds_from_the_storage(tmp_path):
    from optuna.trial import create_trial

    from nas_attn.viz.serve import PageSource, make_server

    run = make_run_dir(tmp_path / "run")
    source = PageSource(run, refresh_s=2.0, min_interval_s=0.0)
    server = make_server(source, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/") as r:
            page = r.read().decode()
        assert "payload.json" in page and "REFRESH>0" in page
        with urllib.request.urlopen(base + "/payload.json") as r:
            first = json.loads(r.read())
        writer = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run / 'study.db'}")
        writer.add_trial(create_trial(values=[0.9, 5000.0], user_attrs={"flops": 5000.0}))
        with urllib.request.urlopen(base + "/payload.json") as r:
            second = json.loads(r.read())
        assert second["key"] != first["key"]
        assert second["table"].count("<tr data-state=") == 7
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/nope")
    finally:
        server.shutdown()
        server.server_close()
