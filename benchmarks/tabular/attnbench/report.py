"""Aggregated replay curves, the issue's targets, and the plots (plotly figure; a small SVG).

Following optuna's plot split: :func:`curves` turns replay runs into a small data object,
:func:`plot_replay` draws it as a plotly Figure (never shown or saved here), and
:func:`curves_svg` draws the same data as a dependency-free SVG for the docs (a plotly HTML
with plotly.js embedded weighs ~4.8 MB; static export needs kaleido and a Chromium).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from attnbench.metrics import (
    FrontScorer,
    first_reaching,
    on_grid,
    ratio_ci,
    startup_oracle_trials,
    trace_metrics,
    trials_to,
)
from attnbench.replay import ReplayRun
from nas_attn.errors import ConfigError


@dataclass(frozen=True)
class Curves:
    """Median and quartiles of the hypervolume ratio per method, against trials and epochs."""

    trials: np.ndarray  # 1..N
    epochs: np.ndarray  # epoch grid
    by_trials: dict[str, np.ndarray]  # method -> (3, len(trials)) q25, median, q75
    by_epochs: dict[str, np.ndarray]  # method -> (3, len(epochs))


def curves(runs: Mapping[str, Sequence[ReplayRun]], points: int = 120,
           max_epochs: float | None = None) -> Curves:
    """``max_epochs`` ends the epoch grid (default: the most epochs any run consumed)."""
    n = max(len(r.archs) for rs in runs.values() for r in rs)
    top = max_epochs or max(int(r.consumed[-1]) for rs in runs.values() for r in rs)
    grid = np.linspace(0, top, points)
    by_t, by_e = {}, {}
    for name, rs in runs.items():
        hv = np.full((len(rs), n), np.nan)
        for i, r in enumerate(rs):
            hv[i, : len(r.archs)] = r.metrics["hv_ratio"]
        with warnings.catch_warnings():  # methods replayed with fewer trials: NaN columns
            warnings.simplefilter("ignore", RuntimeWarning)
            by_t[name] = np.nanpercentile(hv, [25, 50, 75], axis=0)
        he = np.stack([on_grid(r.metrics["hv_ratio"], r.consumed, grid) for r in rs])
        by_e[name] = np.percentile(he, [25, 50, 75], axis=0)
    return Curves(np.arange(1, n + 1), grid, by_t, by_e)


def truncate(runs: Mapping[str, Sequence[ReplayRun]], n: int) -> dict[str, list[ReplayRun]]:
    """The same runs cut to their first ``n`` trials (metrics included), so that methods
    replayed with different trial counts can share one plot."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("n", n, "must be an integer >= 1")
    return {name: [replace(r, archs=r.archs[:n], seeds=r.seeds[:n], complete=r.complete[:n],
                           epochs=r.epochs[:n], metrics={k: v[:n] for k, v in r.metrics.items()})
                   for r in rs] for name, rs in runs.items()}


STARTUP_TRIALS = 10  # Optuna's n_startup_trials default for TPESampler and GPSampler


def startup_bound(random_runs: Sequence[ReplayRun], scorer: FrontScorer,
                  startup: int = STARTUP_TRIALS, level: float = 0.95) -> dict[str, Any]:
    """How much faster than random search a sampler that starts with ``startup`` random trials
    can be, at best: per repetition of random search, the trials the startup oracle needs
    (its first ``startup`` trials, then the best architectures knowing the table, see
    :func:`attnbench.metrics.startup_oracle_trials`) against random search's own trials
    to ``level``; medians over repetitions and their ratio (the largest speed-up possible)."""
    pairs = []
    for r in random_runs:
        done = [int(a) for a, c in zip(r.archs[:startup], r.complete[:startup], strict=True)
                if c]
        rand = trials_to(r.metrics["hv_ratio"], level)
        pairs.append((startup_oracle_trials(scorer, done, level), rand))
    return _bound(pairs, startup, level)


def sampled_startup_bound(scorer: FrontScorer, weights: Sequence[float] | None = None,
                          reps: int = 200, trials: int = 300, startup: int = STARTUP_TRIALS,
                          level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """:func:`startup_bound` without a replay: random search simulated as draws with
    replacement from the scorer's architectures with probabilities ``weights`` (uniform if
    None; :func:`attnbench.metrics.random_sampler_weights` gives Optuna's RandomSampler's),
    every trial complete, ``reps`` times.

    On a table built from a random *sample* of a space (a pilot), drawing from the sample
    stands in for random search over the whole space, so the ratio says, before the space is
    trained, whether a sampler can beat random search by a given factor.
    """
    rng = np.random.default_rng(seed)
    n = len(scorer.objectives)
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    pairs = []
    for _ in range(reps):
        draws = rng.choice(n, size=trials, p=p)
        hv = trace_metrics(scorer, draws, [True] * trials)["hv_ratio"]
        rand = trials_to(hv, level)
        pairs.append((startup_oracle_trials(scorer, draws[:startup].tolist(), level), rand))
    return _bound(pairs, startup, level)


def _bound(pairs: Sequence[tuple[tuple[int, bool], float]], startup: int, level: float
           ) -> dict[str, Any]:
    oracle = [k for (k, _), _ in pairs]
    med_o = float(np.median(oracle))
    med_r = float(np.median([r for _, r in pairs]))
    return {"startup": startup, "level": level, "oracle_trials": oracle,
            "exact": all(ok for (_, ok), _ in pairs), "median_oracle": med_o,
            "median_random": med_r, "max_speedup": med_r / med_o if med_o > 0 else float("inf")}


LEVELS = (0.9, 0.95, 0.98, 0.99, 0.995, 1.0)


def epochs_to_levels(runs: Mapping[str, Sequence[ReplayRun]], levels: Sequence[float] = LEVELS
                     ) -> dict[str, dict[str, float]]:
    """Per method, the median over repetitions of the epochs consumed until the HV ratio
    first reaches each level (inf: half the repetitions or more never do)."""
    return {name: {f"{lv:g}": float(np.median([first_reaching(r.metrics["hv_ratio"],
                                                              r.consumed, lv) for r in rs]))
                   for lv in levels} for name, rs in runs.items()}


def targets(summary: Mapping[str, Mapping[str, Any]], runs: Mapping[str, Sequence[ReplayRun]],
            n_archs: int, hv_target: float = 0.95) -> dict[str, Any]:
    """The issue's targets, measured.

    - search: the best sampler (fewest median trials to ``hv_target``; samplers replayed with
      fewer repetitions than random are left out, and so are those replayed with fewer trials
      that did not reach the target: their median is not measured) reaches it within
      ``n_archs / 4`` trials and with >= 2x fewer trials than random search.
    - early stopping, per sampler with both variants: ``h`` = min(``hv_target``, the first
      quartile over reps of the no-stop run's final HV ratio, a level most no-stop reps
      reach); epochs to ``h`` with stopping / without (median over reps;
      target <= 0.4; with a 95 % bootstrap interval, the two methods' repetitions resampled
      independently), and the final HV ratio of the COMPLETE trials with stopping / without at
      the same number of trials (target >= 0.95).
    """
    out: dict[str, Any] = {"hv_target": hv_target, "quarter_of_space": n_archs / 4}
    plain = {k: v for k, v in summary.items() if "+es" not in k}
    ref = summary.get("random")
    full = [k for k, v in plain.items()
            if ref is None or (v["reps"] >= ref["reps"] and (
                v["trials"] >= ref["trials"] or math.isfinite(v["trials_to_target"])))]
    if full:
        best = min(full, key=lambda k: plain[k]["trials_to_target"])
        b = plain[best]["trials_to_target"]
        r = ref["trials_to_target"] if ref else math.inf
        hv_trials = {k: [trials_to(x.metrics["hv_ratio"], hv_target) for x in runs[k]]
                     for k in (best, "random") if k in runs}
        out["search"] = {
            "best": best, "best_trials": b, "random_trials": r,
            "speedup_vs_random": (r / b) if b > 0 and math.isfinite(b) else None,
            "speedup_ci95": list(ratio_ci(hv_trials["random"], hv_trials[best]))
            if "random" in hv_trials else None,
            "within_quarter": b <= n_archs / 4,
            "twice_fewer_than_random": math.isfinite(b) and (r >= 2 * b),
        }
    es: dict[str, Any] = {}
    for name, variant in ((n, v) for n in plain for v in summary if v.startswith(n + "+es")):
        h = min(hv_target, float(np.percentile([r.metrics["hv_ratio"][-1]
                                                for r in runs[name]], 25)))
        off = [first_reaching(r.metrics["hv_ratio"], r.consumed, h) for r in runs[name]]
        on = [first_reaching(r.metrics["hv_ratio"], r.consumed, h) for r in runs[variant]]
        e_off, e_on = float(np.median(off)), float(np.median(on))
        ratio = e_on / e_off if math.isfinite(e_on) and e_off > 0 else math.inf
        keep = summary[variant]["hv_ratio"] / summary[name]["hv_ratio"]
        es[variant] = {"hv_level": h, "epochs_without": e_off, "epochs_with": e_on,
                    "epoch_ratio": ratio, "epoch_ratio_ci95": list(ratio_ci(on, off)),
                    "epoch_ratio_ok": ratio <= 0.4,
                    "final_hv_keep": keep, "keep_ok": keep >= 0.95}
    out["early_stopping"] = es
    return out


def markdown_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    cols = [("method", None), ("reps", "{:.0f}"), ("trials", "{:.0f}"),
            ("trials to 95% HV", "{:.0f}"), ("reps reaching", "{:.0%}"),
            ("epochs to 95% HV", "{:.0f}"), ("trials to whole front", "{:.0f}"),
            ("epochs used", "{:.0f}"), ("HV ratio", "{:.3f}"), ("recall", "{:.2f}"),
            ("recall ±std", "{:.2f}"), ("IGD+", "{:.4f}"), ("unique archs", "{:.0f}"),
            ("replay s", "{:.1f}")]
    keys = [None, "reps", "trials", "trials_to_target", "reached_target", "epochs_to_target",
            "trials_to_front", "epochs_total", "hv_ratio", "recall_exact", "recall_std",
            "igd_plus", "unique_archs", "replay_seconds"]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for name, s in summary.items():
        cells = [name]
        for (_, fmt), k in zip(cols[1:], keys[1:], strict=True):
            v = s[k]
            cells.append("not reached" if isinstance(v, float) and math.isinf(v)
                         else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_PALETTE = {"random": "#7f7f7f", "tpe": "#1f77b4", "nsga2": "#2ca02c", "gp": "#d62728"}


def _colour(method: str) -> str:
    """One colour per sampler; the early-stopping variant is drawn dashed in the same colour."""
    return _PALETTE.get(method.split("+")[0], "#9467bd")


# Line styles of the early-stopping variants, in the order their tags first appear:
# (plotly dash name, SVG dasharray). Plain samplers are solid.
_DASHES = (("dash", "6,3"), ("dot", "2,2"), ("dashdot", "7,3,2,3"), ("longdash", "12,4"))


def _dash(method: str, methods: Sequence[str]) -> tuple[str, str] | None:
    """The (plotly, SVG) dash of ``method`` among ``methods``; None for a solid line."""
    if "+es" not in method:
        return None
    tags = list(dict.fromkeys(m.split("+es", 1)[1] for m in methods if "+es" in m))
    return _DASHES[tags.index(method.split("+es", 1)[1]) % len(_DASHES)]


def _svg_dash(method: str, methods: Sequence[str]) -> str:
    d = _dash(method, methods)
    return "" if d is None else f' stroke-dasharray="{d[1]}"'


def plot_replay(c: Curves) -> Any:
    """A plotly Figure: median HV ratio (quartile band) vs trials and vs epochs, per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("vs trials", "vs epochs consumed"))
    for name in c.by_trials:
        colour = _colour(name)
        dash = (_dash(name, list(c.by_trials)) or ("solid",))[0]
        for col, (x, y) in enumerate(((c.trials, c.by_trials[name]),
                                      (c.epochs, c.by_epochs[name])), start=1):
            fig.add_trace(go.Scatter(x=x, y=y[1], name=name, legendgroup=name,
                                     showlegend=col == 1,
                                     line={"color": colour, "dash": dash}), row=1, col=col)
    fig.update_yaxes(title_text="hypervolume ratio (median of reps)", range=[0, 1.02])
    fig.update_xaxes(title_text="trials", row=1, col=1)
    fig.update_xaxes(title_text="epochs", row=1, col=2)
    return fig


def curves_svg(c: Curves, width: int = 900, height: int = 340, y_min: float = 0.0) -> str:
    """The same two panels as a small standalone SVG (median lines only), y from ``y_min``."""
    pw, ph, left, top = (width - 200) // 2 - 40, height - 70, 50, 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    panels = (("HV ratio vs trials", c.trials, c.by_trials),
              ("HV ratio vs epochs consumed", c.epochs, c.by_epochs))
    for p, (title, x, data) in enumerate(panels):
        x0 = left + p * (pw + 60)
        xmax = float(x.max()) or 1.0
        parts.append(f'<text x="{x0 + pw / 2}" y="18" text-anchor="middle">{title}</text>')
        parts.append(f'<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" '
                     'stroke="#888"/>')
        def ypos(v: float) -> float:
            return top + ph * (1 - (max(v, y_min) - y_min) / (1 - y_min))

        for v in sorted({y_min, 0.5, 0.8, 0.9, 0.95, 1.0}):
            if v < y_min:
                continue
            y = ypos(v)
            parts.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                         'stroke="#ddd"/>')
            parts.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        for v in np.linspace(0, xmax, 5):
            xx = x0 + pw * v / xmax
            parts.append(f'<text x="{xx:.1f}" y="{top + ph + 14}" text-anchor="middle">'
                         f'{v:.0f}</text>')
        for name, q in data.items():
            pts = " ".join(f"{x0 + pw * float(a) / xmax:.1f},{ypos(float(b)):.1f}"
                           for a, b in zip(x, q[1], strict=True) if np.isfinite(b))
            dash = _svg_dash(name, list(c.by_trials))
            parts.append(f'<polyline fill="none" stroke="{_colour(name)}" '
                         f'stroke-width="1.5"{dash} points="{pts}"/>')
    for i, name in enumerate(c.by_trials):
        y = top + 14 * i + 8
        colour = _colour(name)
        dash = _svg_dash(name, list(c.by_trials))
        lx = width - 140
        parts.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{y}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{lx + 30}" y="{y + 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
