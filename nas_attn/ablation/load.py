"""Reading an ablation run back: ``nas_attn.load_ablation(path)`` -> one row per job.

Columns: ``job``, ``arm``, ``description``, ``seed``, ``state`` (COMPLETE | FAIL | RUNNING),
``fail_reason``, ``fail_message``, ``val_accuracy``, ``test_accuracy`` (when reported),
``val_loss``, ``train_loss``, ``flops``, ``params``, ``spec_hash``, ``epochs_trained``,
``train_seconds``, ``number`` (the Optuna trial), ``run_id``, ``spec`` (JSON). Accuracies are
fractions; metrics are NaN where a job did not complete. A job tried more than once (an orphan
retrained on resume) appears once: its COMPLETE trial, else its latest one. The table is what
:func:`nas_attn.ablation.stats.analyze` takes. ``frame.attrs["ablation"]`` holds the run's
``ablation.yaml`` (resolved config, arms, skipped arms, notes).

The Optuna storage is the source of truth; ``jobs.csv`` is the fallback when it cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_attn.ablation.config import ABLATION_JSON, ABLATION_YAML
from nas_attn.errors import ConfigError

JOBS_CSV = "jobs.csv"
COLUMNS = ("job", "arm", "description", "seed", "state", "fail_reason", "fail_message",
           "val_accuracy", "test_accuracy", "val_loss", "train_loss", "flops", "params",
           "spec_hash", "epochs_trained", "train_seconds", "number", "run_id", "spec")
_ATTRS = ("job", "arm", "seed", "fail_reason", "fail_message", "val_accuracy", "test_accuracy",
          "val_loss", "train_loss", "flops", "params", "spec_hash", "epochs_trained",
          "train_seconds", "run_id", "spec")


def jobs_frame(study: Any, run_id: str | None = None,
               descriptions: dict[str, str] | None = None) -> Any:
    """One row per job of ``run_id`` (every run when None) from an Optuna study."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        if "job" not in t.user_attrs or (run_id and t.user_attrs.get("run_id") != run_id):
            continue
        row: dict[str, Any] = {k: t.user_attrs.get(k) for k in _ATTRS}
        row["state"] = t.state.name
        row["number"] = t.number
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        return df
    df["description"] = [(descriptions or {}).get(a, a) for a in df["arm"]]
    # per job: the COMPLETE trial if any, else the latest
    df["_rank"] = (df["state"] == "COMPLETE").astype(int)
    df = df.sort_values(["job", "_rank", "number"]).groupby("job", sort=True).tail(1)
    df = df.drop(columns="_rank").sort_values("job").reset_index(drop=True)
    for c in ("job", "seed", "number"):
        df[c] = df[c].astype("int64")
    for c in ("val_accuracy", "test_accuracy", "val_loss", "train_loss", "flops", "params",
              "train_seconds", "epochs_trained"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def _read_doc(path: Path) -> dict[str, Any]:
    from nas_attn.yamlio import load_yaml

    doc = load_yaml(path / ABLATION_YAML) if (path / ABLATION_YAML).exists() else {}
    return dict(doc) if isinstance(doc, dict) else {}


def load_ablation(path: str | Path) -> Any:
    """The jobs table of an ablation run folder (see the module docstring)."""
    import pandas as pd

    path = Path(path)
    info_path = path / ABLATION_JSON
    if not path.is_dir():
        raise ConfigError("path", str(path), "no such folder")
    if not info_path.exists():
        raise ConfigError("path", str(path), f"not an ablation run folder (no {ABLATION_JSON})")
    info = json.loads(info_path.read_text())
    doc = _read_doc(path)
    descriptions = {a["name"]: a["description"] for a in doc.get("arms", [])}
    try:
        import optuna

        from nas_attn.search import storage as st

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=info["study_name"],
                                  storage=st.open_storage(st.default_url(path)))
        df = jobs_frame(study, info["run_id"], descriptions)
    except (KeyError, ConfigError):
        if not (path / JOBS_CSV).exists():
            raise ConfigError("path", str(path), "neither its study.db nor jobs.csv can be "
                              "read") from None
        df = pd.read_csv(path / JOBS_CSV)
    df.attrs["ablation"] = doc
    return df
