"""Writers for ablation results: a Markdown report and CSV files (pure text, no plotting)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

RESULT_COLUMNS = (
    ("arm", "arm"), ("n", "n"), ("mean", "mean %"), ("diff", "Δ pp [95% CI]"),
    ("p_holm", "p (t, Holm)"), ("wilcoxon_p_holm", "p (Wilcoxon, Holm)"), ("d_z", "d_z"),
    ("flops_delta_pct", "Δ FLOPs %"), ("params_delta_pct", "Δ params %"),
    ("seeds_needed", "seeds needed"),
)


def _num(v: object, fmt: str) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt)


def _p(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "<0.001" if float(v) < 0.001 else f"{float(v):.3g}"  # type: ignore[arg-type]


def _cell(row: dict, key: str, decimals: int) -> str:
    if key == "mean":
        ci = (f" [{_num(row['ci_low'], f'.{decimals}f')}, {_num(row['ci_high'], f'.{decimals}f')}]"
              if not pd.isna(row["ci_low"]) else "")
        return _num(row["mean"], f".{decimals}f") + ci
    if key == "diff":
        if pd.isna(row["diff_mean"]):
            return "–"
        ci = (f" [{row['diff_ci_low']:+.{decimals}f}, {row['diff_ci_high']:+.{decimals}f}]"
              if not pd.isna(row["diff_ci_low"]) else "")
        star = " *" if row.get("significant") else ""
        return f"{row['diff_mean']:+.{decimals}f}{ci}{star}"
    if key in ("p_holm", "wilcoxon_p_holm"):
        return _p(row[key])
    if key == "d_z":
        return _num(row[key], ".2f")
    if key.endswith("_pct"):
        return _num(row[key], "+.1f")
    if key == "seeds_needed":
        return "–" if pd.isna(row[key]) else str(row[key])
    return str(row[key]).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> str:
    """A GitHub Markdown table of ``frame`` over ``(column, header)`` pairs (values as str)."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c, _ in columns) + " |"
            for r in frame.to_dict("records")]
    return "\n".join([head, sep, *body])


def results_table(results: pd.DataFrame, decimals: int = 1) -> str:
    """The per-arm table of :func:`nas_attn.ablation.stats.analyze` as Markdown."""
    cols = [(k, h) for k, h in RESULT_COLUMNS
            if k in ("diff", "mean") or k in results.columns]
    rows = [{k: _cell(r, k, decimals) for k, _ in cols} for r in results.to_dict("records")]
    return markdown_table(pd.DataFrame(rows, columns=[k for k, _ in cols]), cols)


def effects_table(effects: pd.DataFrame, decimals: int = 2) -> str:
    """Factorial main effects and interactions as Markdown."""
    rows = [{"term": r["term"], "kind": r["kind"], "contrast": r["contrast"],
             "estimate": f"{r['estimate']:+.{decimals}f}",
             "ci": (f"[{r['ci_low']:+.{decimals}f}, {r['ci_high']:+.{decimals}f}]"
                    if not pd.isna(r["ci_low"]) else "–"),
             "p": _p(r["p_value"]), "n": r["n"]} for r in effects.to_dict("records")]
    cols = [("term", "term"), ("kind", "kind"), ("contrast", "contrast"),
            ("estimate", "estimate pp"), ("ci", "95% CI"), ("p", "p"), ("n", "seeds")]
    return markdown_table(pd.DataFrame(rows, columns=[c for c, _ in cols]), cols)


def to_markdown(results: pd.DataFrame, effects: pd.DataFrame | None = None,
                title: str = "Ablation", skipped: Sequence[tuple[str, str]] = (),
                notes: Sequence[str] = (), decimals: int = 1) -> str:
    """The whole report: verdicts, the per-arm table, factorial effects, skipped arms, notes."""
    metric = str(results["metric"].iloc[0]) if len(results) else "metric"
    parts = [f"# {title}", "", f"Metric: `{metric}` (percent); differences are paired per "
             "seed against the base, p-values Holm-corrected across arms; * = significant.", "",
             "## Verdicts", "", *(f"- {v}" for v in results["verdict"]), "",
             "## Arms", "", results_table(results, decimals), ""]
    if effects is not None and len(effects):
        parts += ["## Factorial effects", "", effects_table(effects), ""]
    if skipped:
        parts += ["## Skipped (cannot be built)", "", *(f"- {d}: {r}" for d, r in skipped), ""]
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(parts)


def write_markdown(path: str | Path, results: pd.DataFrame,
                   effects: pd.DataFrame | None = None, title: str = "Ablation",
                   skipped: Sequence[tuple[str, str]] = (), notes: Sequence[str] = (),
                   decimals: int = 1) -> Path:
    """Write :func:`to_markdown` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(to_markdown(results, effects, title, skipped, notes, decimals),
                    encoding="utf-8")
    return path


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a results or effects table as CSV (full precision, no index); returns the path."""
    path = Path(path)
    frame.to_csv(path, index=False)
    return path
