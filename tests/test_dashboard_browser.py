"""The dashboard in a real headless Chromium (Debian's package, scripts/setup.d/10-chromium.sh)
driven by Playwright for Python; ``playwright install`` is never needed.

Checks on a small constructed run: every plot renders, the Pareto plot draws one point per
trial, hovering a point shows its architecture, the log-scale button works, the table sorts and
filters, no console errors; and a served page (``--serve`` on 127.0.0.1) follows the storage.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_viz_data import STUDY, make_run_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("NAS_ATTN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
IDS = ("pareto", "hypervolume", "attribution", "parallel", "curves")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/setup.d/10-chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request: {r.url}")
            if not r.url.startswith(("file:", "http://127.0.0.1", "data:", "blob:")) else None)
    page.goto(url)
    for i in IDS:
        page.wait_for_selector(f"#{i} .main-svg", state="attached", timeout=30_000)
    return page, errors


def _shown_numbers(page) -> list[int]:
    return page.eval_on_selector_all(
        "#trials tbody tr", "rs => rs.filter(r => r.style.display !== 'none')"
        ".map(r => parseInt(r.cells[0].dataset.v))")


def test_static_page(browser, tmp_path):
    from nas_attn.viz.dashboard import write_dashboard

    out = write_dashboard(make_run_dir(tmp_path / "run"))
    page, errors = _open(browser, out.as_uri())
    for i in IDS:
        assert page.locator(f"#{i} .main-svg").count() >= 1, i

    # one drawn point per trial: from plotly's data and from the SVG
    n_data = page.evaluate("""() => document.getElementById('pareto').data
        .filter(t => t.meta === 'trials').reduce((s, t) => s + t.x.length, 0)""")
    n_svg = page.locator("#pareto .scatterlayer .trace path.point").count()
    assert n_data == 6 and n_svg == 6

    # hovering trial 1 shows its architecture (module, position, settings)
    page.evaluate("""() => {
        const gd = document.getElementById('pareto');
        const c = gd.data.findIndex(t => t.meta === 'trials' && t.customdata.includes(1));
        Plotly.Fx.hover(gd, [{curveNumber: c, pointNumber: gd.data[c].customdata.indexOf(1)}]);
    }""")
    label = page.locator("#pareto .hoverlayer .hovertext").first.text_content()
    assert "#1 COMPLETE" in label
    assert "stage0: eca(k_size=auto) @ post_add" in label
    assert "stage1: se(rd_ratio=0.0625) @ post_bn" in label

    # the same through a real mouse move over the point of the cheapest trial (#5)
    page.evaluate("() => Plotly.Fx.unhover('pareto')")
    box = page.evaluate("""() => {
        const gd = document.getElementById('pareto');
        const c = gd.data.findIndex(t => t.meta === 'trials' && t.customdata.includes(5));
        const i = gd.data[c].customdata.indexOf(5);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        const xr = gd.querySelector('.xy .nsewdrag') ? gd.querySelector('.xy .nsewdrag')
            .getBoundingClientRect() : r;
        return {x: xr.left + xa.l2p(gd.data[c].x[i]), y: xr.top + ya.l2p(gd.data[c].y[i])};
    }""")
    page.mouse.move(box["x"], box["y"])
    page.wait_for_selector("#pareto .hoverlayer .hovertext", timeout=5_000)
    assert "#5 COMPLETE" in page.locator("#pareto .hoverlayer .hovertext").first.text_content()

    # the log/linear buttons switch the FLOPs axis
    page.locator("#pareto .updatemenu-button").nth(1).click()
    assert page.evaluate("() => document.getElementById('pareto').layout.xaxis.type") == "log"

    # the table sorts (accuracy ascending, empty last) and filters
    page.locator("#trials th", has_text="val_accuracy").click()
    assert _shown_numbers(page) == [3, 5, 0, 2, 1, 4]
    page.fill("#filter", "eca")
    assert sorted(_shown_numbers(page)) == [1, 3]
    page.fill("#filter", "")
    page.select_option("#state", "front")
    assert sorted(_shown_numbers(page)) == [0, 1, 5]
    assert errors == []
    page.close()


def test_served_page_follows_the_storage(browser, tmp_path):
    import optuna
    from optuna.trial import create_trial

    from nas_attn.viz.serve import PageSource, make_server

    run = make_run_dir(tmp_path / "run")
    server = make_server(PageSource(run, refresh_s=0.5, min_interval_s=0.0), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page, errors = _open(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        assert page.locator("#trials tbody tr").count() == 6
        writer = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run / 'study.db'}")
        writer.add_trial(create_trial(values=[0.9, 5000.0], user_attrs={"flops": 5000.0}))
        page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 7",
                               timeout=20_000)
        n = page.evaluate("""() => document.getElementById('pareto').data
            .filter(t => t.meta === 'trials').reduce((s, t) => s + t.x.length, 0)""")
        assert n == 7
        assert errors == []
        page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_the_front_in_latency_renders(browser, tmp_path):
    """A run whose trials record latency_ms (a study with a latency table) gets a second Pareto
    plot: every trial drawn once, the front as a line, no console errors."""
    from nas_attn.viz.dashboard import write_dashboard

    latency = {0: 2.0, 1: 1.5, 2: 1.0, 3: 1.2, 4: 2.5, 5: 3.0}
    out = write_dashboard(make_run_dir(tmp_path / "run", latency=latency))
    page, errors = _open(browser, out.as_uri())
    page.wait_for_selector("#pareto_other .main-svg", state="attached", timeout=30_000)
    n_svg = page.locator("#pareto_other .scatterlayer .trace path.point").count()
    front = page.evaluate("""() => document.getElementById('pareto_other').data
        .filter(t => t.meta === 'front').map(t => Array.from(t.x))""")
    assert n_svg == 6 and front == [[1.0, 1.5]]
    assert errors == []
    page.close()
