"""What an ablation run leaves in its folder once its jobs ran (or as far as they got).

- ``jobs.csv``: one row per job (:func:`nas_attn.ablation.load.jobs_frame`);
- ``results.csv`` / ``results.md``: per-arm statistics and verdicts
  (:func:`nas_attn.ablation.stats.analyze`, :mod:`nas_attn.ablation.report`);
- ``effects.csv``: factorial main effects and interactions (factorial designs);
- ``plots.html``: the forest plot and, for factorials, one interaction plot per pair of
  factors, on one page with plotly.js embedded once (works offline).

Arms or jobs without a result are listed in the notes; without any result for the base arm
there are no statistics (only ``jobs.csv``).
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from nas_attn.ablation.config import AblationConfig
    from nas_attn.ablation.designs import Design

RESULTS_CSV, RESULTS_MD, EFFECTS_CSV, PLOTS_HTML = ("results.csv", "results.md", "effects.csv",
                                                    "plots.html")


@dataclass
class Report:
    verdicts: list[str] = field(default_factory=list)
    message: str = ""
    results: pd.DataFrame | None = None
    effects: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def tidy(jobs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The COMPLETE jobs as the statistics' input: arm, seed, the metric(s), flops, params."""
    done = jobs[jobs["state"] == "COMPLETE"]
    cols = ["arm", "seed", metric] + [c for c in ("flops", "params")
                                      if c in done.columns and done[c].notna().all()]
    return done[cols].reset_index(drop=True)


def missing_notes(jobs: pd.DataFrame, design: Design, seeds: list[int]) -> list[str]:
    """One note per arm with jobs that have no result (failed, or not run yet)."""
    notes = []
    for a in design.arms:
        rows = jobs[jobs["arm"] == a.name]
        done = set(rows[rows["state"] == "COMPLETE"]["seed"])
        lost = [s for s in seeds if s not in done]
        if lost:
            why = sorted({str(r) for r in rows[rows["seed"].isin(lost)]["fail_reason"].dropna()})
            notes.append(f"{a.name} ({a.description}): no result for seed(s) "
                         f"{', '.join(map(str, lost))}"
                         + (f" ({', '.join(why)})" if why else " (not run)"))
    return notes


def plots_page(title: str, figures: list[Any], verdicts: list[str]) -> str:
    """One HTML page with every figure; plotly.js is embedded with the first one only."""
    body = [f.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
            for i, f in enumerate(figures)]
    items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title></head>\n<body style=\"font-family:sans-serif\">"
            f"<h1>{html.escape(title)}</h1><ul>{items}</ul>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _figures(results: pd.DataFrame, data: pd.DataFrame, design: Design, metric: str,
             notes: list[str]) -> list[Any]:
    from nas_attn.ablation.designs import cells_frame
    from nas_attn.ablation.stats import cell_means
    from nas_attn.viz.ablation_plots import (
        forest_data,
        interaction_data,
        plot_forest,
        plot_interaction,
    )

    figs = [plot_forest(forest_data(results))]
    if design.cells:
        cells = cells_frame(design)
        factors = [c for c in cells.columns if c != "arm"]
        for x, trace in itertools.combinations(factors, 2):
            try:
                means = cell_means(data, cells, x, trace, metric)
            except ConfigError as e:
                notes.append(f"no interaction plot {x} x {trace}: {e}")
                continue
            figs.append(plot_interaction(interaction_data(means, x, trace)))
    return figs


def write_outputs(run_dir: Path, cfg: AblationConfig, design: Design, study: Any,
                  run_id: str) -> Report:
    """Write every output file of the run folder from the study; returns the verdicts."""
    from nas_attn.ablation import report as rp
    from nas_attn.ablation.designs import BASE, cells_frame
    from nas_attn.ablation.load import JOBS_CSV, jobs_frame
    from nas_attn.ablation.stats import analyze, factorial_effects

    jobs = jobs_frame(study, run_id, design.descriptions)
    jobs.to_csv(run_dir / JOBS_CSV, index=False)
    out = Report(notes=[*design.notes, *missing_notes(jobs, design, list(cfg.seeds))])
    data = tidy(jobs, cfg.metric) if len(jobs) else jobs
    if not len(data) or BASE not in set(data["arm"]):
        out.message = "no result for the base arm: no statistics (see jobs.csv)"
        return out
    out.results = analyze(data, base=BASE, metric=cfg.metric, descriptions=design.descriptions)
    out.verdicts = [str(v) for v in out.results["verdict"]]
    if design.cells:
        try:
            out.effects = factorial_effects(data, cells_frame(design), cfg.metric)
            rp.write_csv(out.effects, run_dir / EFFECTS_CSV)
        except ConfigError as e:
            out.notes.append(f"no factorial effects: {e}")
    rp.write_csv(out.results, run_dir / RESULTS_CSV)
    title = f"Ablation {cfg.name} ({cfg.design}, {len(cfg.seeds)} seeds)"
    rp.write_markdown(run_dir / RESULTS_MD, out.results, out.effects, title, design.skipped,
                      out.notes)
    figs = _figures(out.results, data, design, cfg.metric, out.notes)
    (run_dir / PLOTS_HTML).write_text(plots_page(title, figs, out.verdicts), encoding="utf-8")
    return out
