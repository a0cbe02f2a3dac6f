"""The run folder: everything one search leaves behind, next to its resolved configuration.

Layout (``runs/<study>-<YYYYmmdd-HHMMSS>`` by default)::

    run.json        study name, run id, storage URL (redacted), requested trials, seed, sampler,
                    versions, status (running, finished, interrupted, stopped, failed; a
                    ``message`` says why a run failed or stopped), how to rebuild the setup
    driver.lock     held (flock) by the run's live driver: pid and host (search.run_lock)
    study.yaml      the resolved study (every default written out)
    study.db        the Optuna storage (SQLite), unless --storage points elsewhere
    trials.csv      one row per trial (also trials.parquet when pyarrow is installed)
    ray/            Ray Tune's own results (one folder per run segment)
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.files import write_atomically

RUN_JSON = "run.json"
STUDY_YAML = "study.yaml"


def default_run_dir(study_name: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{study_name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{study_name}-{stamp}-{n}"
    return path


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from nas_attn import __version__

    out = {"nas_attn": __version__, "python": platform.python_version()}
    for pkg in ("optuna", "ray", "torch", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic write (a kill -9 never leaves half a run.json)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))


def ended_status(requested: int, counted: int, interrupted: bool, stop_reason: str | None,
                 error: BaseException | None) -> tuple[str, str]:
    """What a run segment's end means (pure): (status, message) for run.json.

    ``failed`` with the exception's type and message when one ended it; ``interrupted`` on a
    signal (Ctrl-C) or when trials were left unfinished; ``stopped`` when the searcher gave up
    (``stop_reason``); ``finished`` only when the requested count was reached; ``failed``
    naming the shortfall otherwise.
    """
    if error is not None:
        return "failed", f"{type(error).__name__}: {error}"
    if interrupted:
        return "interrupted", ""
    if stop_reason:
        return "stopped", stop_reason
    if counted >= requested:
        return "finished", ""
    return "failed", f"ended with {counted} of {requested} requested trials counted"


def write_ended(path: Path, info: Mapping[str, Any], status: str, message: str = ""
                ) -> dict[str, Any]:
    """``info`` with the run's final ``status`` (and ``message``, e.g. the error of a failed
    run) and ``ended_at`` time, written to ``path``."""
    ended = {**info, "status": status, "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ended.pop("message", None)
    if message:
        ended["message"] = message
    write_json(path, ended)
    return ended


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_JSON
    if not run_dir.is_dir():
        raise ConfigError("RUN_DIR", str(run_dir), "no such folder")
    if not path.exists():
        raise ConfigError("RUN_DIR", str(run_dir), f"not a nas-attn run folder (no {RUN_JSON})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), None, f"corrupt run file: {e}") from None


def write_study_yaml(run_dir: Path, resolved: Mapping[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=False)
    write_atomically(run_dir / STUDY_YAML, lambda tmp: tmp.write_text(text))
