"""The dashboard page: one self-contained HTML file that works offline.

plotly.js is inlined once in a ``<script>``; every figure travels as JSON in one
``<script type="application/json">`` payload and is drawn with ``Plotly.react`` (no CDN, no
MathJax, no network). The trial table is a plain HTML table rendered here, sorted and filtered
by a few lines of vanilla JS. In ``--serve`` mode the page polls ``payload.json`` and redraws
in place when the study changed, keeping the table's sort and filter.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.viz import data as vd
from nas_attn.viz.meta import RunMeta, run_meta

FIGURE_IDS = ("pareto", "hypervolume", "attribution", "parallel", "curves")
OTHER_ID = "pareto_other"  # present when the trials record a second cost (cost_views)
ONESHOT_ID = "oneshot"  # present for a one-shot run: predicted vs confirmed (oneshot_view)


@dataclass(frozen=True)
class Dashboard:
    """Every data object of the page (the pure part; :func:`figures` draws them)."""

    meta: RunMeta
    records: tuple[vd.TrialRecord, ...]
    pareto: vd.ParetoData
    hypervolume: vd.HypervolumeData
    attribution: vd.AttributionData
    parallel: vd.ParallelData
    curves: tuple[vd.Curve, ...]
    pareto_other: vd.ParetoData | None = None  # the front in the other cost (cost_views)
    oneshot: Any = None  # oneshot_view.PredictedVsConfirmed of a one-shot run, else None


def build(study: Any, info: Mapping[str, Any] | None = None, study_yaml: str | None = None,
          reference: Sequence[float] | None = None,
          curves: Mapping[int, Sequence[tuple[int, float]]] | None = None,
          limits: Mapping[str, float] | None = None) -> Dashboard:
    """All data objects of the page from an Optuna study and the run's ``run.json`` dict
    (``curves``: per-epoch accuracy by trial number, for trials that store none). The
    hypervolume is against ``reference``, else the run's own reference point (recorded in the
    study; for a run from before it was, the rule of :mod:`nas_attn.objectives` with the
    run's cost ``limits``, see :func:`nas_attn.search.results.run_limits`)."""
    from nas_attn.objectives import study_reference
    from nas_attn.viz.cost_views import other_cost, pareto_in
    from nas_attn.viz.oneshot_view import predicted_vs_confirmed

    meta = run_meta(study, info, study_yaml)
    objs = meta.objectives
    recs = tuple(vd.records(study, objs, curves))
    if reference is None:
        reference = study_reference(study, objs, limits, record=False)
    other = other_cost(recs, objs)
    return Dashboard(meta, recs, vd.pareto_data(recs, objs),
                     vd.hypervolume_data(recs, objs, reference),
                     vd.attribution_data(recs, objs), vd.parallel_data(recs, objs),
                     vd.curves_data(recs), pareto_in(recs, objs, other) if other else None,
                     predicted_vs_confirmed(study))


def load_run_inputs(run_dir: str | Path) -> tuple[Any, dict[str, Any], str | None]:
    """``(study, run.json dict, study.yaml text)`` of a run folder, through ``load_run``."""
    from nas_attn.search.results import load_run
    from nas_attn.search.run_dir import STUDY_YAML

    run = load_run(run_dir)
    path = Path(run_dir) / STUDY_YAML
    return run.study, dict(run.info), path.read_text() if path.exists() else None


def ray_curves(run_dir: str | Path) -> dict[int, tuple[tuple[int, float], ...]]:
    """Per-epoch ``val_accuracy`` of every trial Ray ran for this run folder, by Optuna trial
    number (``RUN_DIR/ray/<segment>/trial_*/result.json``, one JSON line per epoch, whose
    ``config.optuna_number`` names the trial). Unreadable lines are skipped."""
    out: dict[int, dict[int, float]] = {}
    for path in sorted(Path(run_dir).glob("ray/*/trial_*/result.json")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                row = json.loads(line)
                number = int(row["config"]["optuna_number"])
                epoch, acc = int(row["epoch"]), float(row[vd.ACCURACY])
            except (ValueError, KeyError, TypeError):
                continue
            out.setdefault(number, {})[epoch] = acc
    return {n: tuple(sorted(c.items())) for n, c in out.items()}


def figures(d: Dashboard) -> dict[str, Any]:
    """``{div id: plotly Figure}`` in page order."""
    from nas_attn.viz import plots

    acc, _ = vd.plotted_axes(d.meta.objectives)
    other = {} if d.pareto_other is None else {"pareto_other": plots.pareto_figure(
        d.pareto_other)}
    if d.oneshot is not None:
        from nas_attn.viz.oneshot_view import predicted_figure

        other[ONESHOT_ID] = predicted_figure(d.oneshot)
    return {
        "pareto": plots.pareto_figure(d.pareto), **other,
        "hypervolume": plots.hypervolume_figure(d.hypervolume),
        "attribution": plots.attribution_figure(d.attribution),
        "parallel": plots.parallel_figure(d.parallel),
        "curves": plots.curves_figure(d.curves, acc.name),
    }


# -- HTML pieces --------------------------------------------------------------------------


def _cell(v: Any) -> tuple[str, str]:
    """``(data-v sort key, shown text)`` of one table cell."""
    if v is None or v == "":
        return "", "-" if v is None else ""
    if isinstance(v, float):
        return repr(v), f"{v:.6g}"
    return str(v), str(v)


def table_html(d: Dashboard) -> str:
    acc, cost = vd.plotted_axes(d.meta.objectives)
    names = {"accuracy": acc.name, "cost": cost.name}
    numeric = {"number", "accuracy", "cost", "epochs", "seconds"}
    head = "".join(
        f'<th data-col="{i}" data-type="{"num" if c in numeric else "str"}">'
        f"{html.escape(names.get(c, c))}</th>" for i, c in enumerate(vd.TABLE_COLUMNS))
    body = []
    for row in vd.table_rows(d.records, d.pareto.front):
        cells = []
        for c in vd.TABLE_COLUMNS:
            key, text = _cell(row[c])
            cells.append(f'<td data-v="{html.escape(key)}">{html.escape(text)}</td>')
        body.append(f'<tr data-state="{html.escape(str(row["state"]))}">{"".join(cells)}</tr>')
    return (f'<table id="trials"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def meta_html(d: Dashboard) -> str:
    m = d.meta
    counts = vd.state_counts(d.records)
    rows: list[tuple[str, str]] = [
        ("study", m.study_name), ("run id", m.run_id or "-"), ("status", m.status or "-"),
        ("objectives", ", ".join(f"{o.name} ({o.direction})" for o in m.objectives)),
        ("sampler", m.sampler or "-"), ("seed", "-" if m.seed is None else str(m.seed)),
        ("requested trials", "-" if m.requested_trials is None else str(m.requested_trials)),
        ("trials by state", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        ("hypervolume reference",
         ", ".join(f"{o.name}={v:.6g}" for o, v in
                   zip(d.hypervolume.objectives, d.hypervolume.reference, strict=False)) or "-"),
        ("storage", m.storage or "-"), ("started", m.started_at or "-"),
        ("ended", m.ended_at or "-"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(m.versions.items())) or "-"),
        ("page generated", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    out = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                  for k, v in rows)
    extra = ""
    if m.storage and m.storage.startswith("sqlite"):
        extra = ("<p>Explore the same storage in optuna-dashboard: "
                 f"<code>optuna-dashboard {html.escape(m.storage)}</code></p>")
    if m.study_yaml:
        extra += ("<details><summary>study.yaml (resolved)</summary>"
                  f"<pre>{html.escape(m.study_yaml)}</pre></details>")
    return f'<table class="meta">{out}</table>{extra}'


def payload(d: Dashboard) -> dict[str, Any]:
    """What the page draws: figures as plotly JSON, the table and metadata as HTML, and a
    ``key`` that changes whenever the study does (the page polls it in --serve mode)."""
    figs = {k: json.loads(f.to_json()) for k, f in figures(d).items()}
    out = {"figures": figs, "table": table_html(d), "meta": meta_html(d)}
    stable = json.dumps({"figures": figs, "table": out["table"]}, sort_keys=True)
    out["key"] = hashlib.sha256(stable.encode()).hexdigest()[:16]
    return out


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can end it early)."""
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1400px;padding:0 16px 40px;color:#222}
h1{font-size:1.4em;margin:16px 0 4px} h2{font-size:1.1em;margin:28px 0 6px}
.plot{width:100%;min-height:320px;border:1px solid #eee;margin:6px 0}
table{border-collapse:collapse;font-size:13px}
#trials th,#trials td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}
#trials th{cursor:pointer;background:#f4f4f4;position:sticky;top:0;user-select:none}
#trials th.asc:after{content:" \\25B2"} #trials th.desc:after{content:" \\25BC"}
#trials td:nth-child(8){max-width:560px}
.meta th{text-align:left;padding:2px 12px 2px 0;color:#555;font-weight:600}
.controls{margin:6px 0} .controls input{width:320px} small{color:#666}
"""

_JS = r"""
(function(){
const CONFIG={displaylogo:false,responsive:true};
const IDS=%(ids)s;
let current=JSON.parse(document.getElementById('nas-attn-payload').textContent);
let sortCol=null, sortDir=1;
function draw(p){
  for(const id of IDS){const f=p.figures[id], el=document.getElementById(id);
    if(f&&el) Plotly.react(id,f.data,f.layout,CONFIG);}
}
function applyTable(){
  const tb=document.querySelector('#trials tbody'); if(!tb) return;
  const rows=Array.from(tb.rows);
  if(sortCol!==null){
    const th=document.querySelectorAll('#trials th')[sortCol];
    const num=th.dataset.type==='num';
    rows.sort((a,b)=>{
      const x=a.cells[sortCol].dataset.v, y=b.cells[sortCol].dataset.v;
      if(x===''&&y==='') return 0; if(x==='') return 1; if(y==='') return -1;
      return (num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y))*sortDir;});
    rows.forEach(r=>tb.appendChild(r));
  }
  const terms=document.getElementById('filter').value.toLowerCase().split(/\s+/).filter(Boolean);
  const st=document.getElementById('state').value; let shown=0;
  rows.forEach(r=>{
    const s=r.dataset.state;
    const okState=!st||(st==='front'?s.endsWith('*'):s.split(' ')[0]===st);
    const text=r.textContent.toLowerCase();
    const ok=okState&&terms.every(t=>text.includes(t));
    r.style.display=ok?'':'none'; if(ok) shown++;});
  document.getElementById('shown').textContent=shown+' of '+rows.length+' trials';
}
function bindTable(){
  document.querySelectorAll('#trials th').forEach((th,i)=>{
    th.onclick=()=>{sortDir=(sortCol===i)?-sortDir:1; sortCol=i;
      document.querySelectorAll('#trials th').forEach(h=>h.classList.remove('asc','desc'));
      th.classList.add(sortDir>0?'asc':'desc'); applyTable();};
    if(i===sortCol) th.classList.add(sortDir>0?'asc':'desc');
  });
  applyTable();
}
function swap(p){
  document.getElementById('table-box').innerHTML=p.table;
  document.getElementById('meta-box').innerHTML=p.meta;
  bindTable();
}
document.getElementById('filter').addEventListener('input',applyTable);
document.getElementById('state').addEventListener('change',applyTable);
draw(current); bindTable();
const REFRESH=%(refresh)s;
if(REFRESH>0){
  setInterval(()=>{
    fetch('payload.json',{cache:'no-store'}).then(r=>r.ok?r.json():null).then(p=>{
      if(!p) return;
      if(p.key!==current.key){current=p; draw(p); swap(p);}
      else{document.getElementById('meta-box').innerHTML=p.meta;}
    }).catch(()=>{});
  },REFRESH*1000);
}
window.nasAttnDashboard={payload:()=>current};
})();
"""


def render_html(d: Dashboard, refresh_s: float = 0.0, pay: Mapping[str, Any] | None = None
                ) -> str:
    """The whole page. ``refresh_s`` > 0 makes it poll ``payload.json`` (``--serve`` only)."""
    from plotly.offline import get_plotlyjs

    p = dict(pay) if pay is not None else payload(d)
    title = f"nas-attn: {d.meta.study_name}"
    sections = [
        ("pareto", "Pareto front",
         "Hover a point for its architecture; buttons switch the FLOPs axis between linear and "
         "log. PRUNED trials sit at their last accuracy (partly trained, never on the front); "
         "trials without an accuracy (FAIL) lie on the strip below."),
        ("hypervolume", "Hypervolume",
         "Normalised hypervolume of the run's front (one trial per architecture) against its "
         "fixed reference point (see the metadata): the number nas-attn search prints."),
        ("attribution", "Attribution",
         "Mean over COMPLETE trials; the number in a cell is how many trials it averages; the "
         "none column repeats the stage's no-attention trials in every row."),
        ("parallel", "Parallel coordinates", "Drag along an axis to select a range."),
        ("curves", "Learning curves", ""),
    ]
    if d.pareto_other is not None:
        sections.insert(1, (OTHER_ID, f"Pareto front in {d.pareto_other.x.name}",
                            f"The same trials at their {d.pareto_other.x.name} (FLOPs hide what "
                            "attention costs in time); the line is the front in this plane."))
    if d.oneshot is not None:
        sections.insert(1, (ONESHOT_ID, "Predicted vs confirmed (one-shot)",
                            d.oneshot.caption() + ": the supernet's accuracy of each confirmed "
                            "architecture against its stand-alone training (docs/one-shot.md)."))
    parts = [f'<h2>{html.escape(h)}</h2><small>{html.escape(note)}</small>'
             f'<div id="{i}" class="plot"></div>' for i, h, note in sections]
    controls = (
        '<div class="controls"><input id="filter" type="search" '
        'placeholder="filter: words that every shown row contains (e.g. se post_add)"> '
        '<select id="state"><option value="">all states</option>'
        '<option value="front">Pareto front</option><option>COMPLETE</option>'
        '<option>PRUNED</option><option>FAIL</option><option>RUNNING</option></select> '
        '<small id="shown"></small> <small>(* = on the Pareto front; click a header to '
        "sort)</small></div>")
    js = _JS % {"ids": json.dumps([i for i, _, _ in sections]), "refresh": float(refresh_s)}
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<link rel=\"icon\" href=\"data:,\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<h2>Run</h2><div id="meta-box">', p["meta"], "</div>",
        *parts,
        "<h2>Trials</h2>", controls, '<div id="table-box">', p["table"], "</div>",
        f'<script type="application/json" id="nas-attn-payload">{_script_json(p)}</script>',
        f"<script>{js}</script></body></html>",
    ])


def write_dashboard(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Render the dashboard of a run folder to ``output`` (default ``RUN_DIR/dashboard.html``)."""
    from nas_attn.files import write_atomically
    from nas_attn.search.results import run_limits

    study, info, yaml_text = load_run_inputs(run_dir)
    page = render_html(build(study, info, yaml_text, curves=ray_curves(run_dir),
                             limits=run_limits(Path(run_dir), info)))
    out = Path(output) if output is not None else Path(run_dir) / "dashboard.html"
    return write_atomically(out, lambda tmp: tmp.write_text(page, encoding="utf-8"))
