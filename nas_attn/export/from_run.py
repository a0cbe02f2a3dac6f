"""Export picked trials of a search run as bundles (``nas-attn export RUN_DIR --pick ...``).

For each trial the picks select (:func:`nas_attn.export.picks.select` over the run's trials
table), the weights come from the trial's checkpoint
(``RUN_DIR/checkpoints/<spec_hash>-s<seed>.safetensors``, kept by the search's evaluator) when
it is there; otherwise the spec is trained again, in this process, with the run's data and
training settings (``study.yaml``) and the search's seed, which reproduces the trial.
``retrain=True`` ignores checkpoints and trains from scratch with ``epochs`` and ``seeds`` (see
:mod:`nas_attn.export.retrain`).

Where bundles go: inside ``root`` (default ``RUN_DIR/exports``). One bundle goes to
``root/out`` (default ``root/trial-<N>``); several go to ``root/out/trial-<N>`` (default
``root/trial-<N>``). Retrained bundles are named ``trial-<N>-retrain-e<E>x<K>``. ``out`` must
stay inside ``root``.

All or nothing: every output path is checked (inside ``root``, not existing unless ``force``,
no two the same) before any training; bundles are written into a hidden staging folder inside
``root`` and moved into place only when every one of them was written; on any failure
(including Ctrl-C) the staging folder, and any folder this call created, are removed.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import ACCURACY, is_finite_number

EXPORTS = "exports"
_CHECKPOINT_FORMAT = "nas-attn-checkpoint"


@dataclass(frozen=True)
class RunInfo:
    """What an export needs from a run folder."""

    run_dir: Path
    study_name: str
    run_id: str
    objectives: list[tuple[str, str]]
    data: dict[str, Any]
    train: dict[str, Any]
    input_size: tuple[int, int, int] | None
    trials: Any  # DataFrame
    latency_table: str | None = None  # the study's latency table (the card's latency)


@dataclass(frozen=True)
class Planned:
    """One bundle to write: the selection and where it goes."""

    selection: Any  # nas_attn.export.picks.Selection
    target: Path


# -- reading the run ----------------------------------------------------------------------------


def _incomplete(run_dir: Path, what: str) -> ConfigError:
    return ConfigError("RUN_DIR", str(run_dir), f"incomplete run folder: {what}")


def _trials_table(run_dir: Path, info: Mapping[str, Any]) -> Any:
    """The trials table: from the storage when it can be opened, else ``trials.csv``."""
    import pandas as pd

    from nas_attn.search.results import Run

    csv = run_dir / "trials.csv"
    has_db = (run_dir / "study.db").is_file()
    if not info.get("storage_in_run_dir") or has_db:
        try:
            return Run(run_dir, dict(info)).trials  # falls back to the CSV on ConfigError
        except KeyError:  # the storage does not hold this study
            pass
        except Exception as e:  # an unreachable storage must not hide the CSV
            if not csv.is_file():
                raise ConfigError("RUN_DIR", str(run_dir),
                                  f"cannot read the run's storage ({type(e).__name__}: {e}) "
                                  "and there is no trials.csv") from None
    if not csv.is_file():
        raise _incomplete(run_dir, "no study.db and no trials.csv (did the run start?)")
    return pd.read_csv(csv)


def _study_settings(run_dir: Path) -> dict[str, Any]:
    from nas_attn.search.run_dir import STUDY_YAML
    from nas_attn.yamlio import load_yaml

    path = run_dir / STUDY_YAML
    if not path.is_file():
        raise _incomplete(run_dir, f"no {STUDY_YAML}")
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), None, "expected a mapping (the resolved study)")
    if "synthetic" in raw:
        raise ConfigError("RUN_DIR", str(run_dir), "a synthetic run (the runner's test problem) "
                          "has no networks to export")
    for key in ("data", "train"):
        if not isinstance(raw.get(key), Mapping):
            raise ConfigError(f"{path}: {key}", raw.get(key), "missing or not a mapping")
    return dict(raw)


def _input_size(study: Mapping[str, Any]) -> tuple[int, int, int] | None:
    data = study["data"]
    c, s = data.get("in_chans"), data.get("image_size")
    if isinstance(c, int) and isinstance(s, int):
        return (c, s, s)
    space_size = (study.get("space") or {}).get("input_size")
    if isinstance(space_size, list | tuple) and len(space_size) == 3:
        return tuple(int(v) for v in space_size)  # type: ignore[return-value]
    return None


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Everything an export needs from ``run_dir``; ConfigError for an unknown folder, an
    incomplete one (no ``study.yaml``, no trials) or a synthetic run."""
    from nas_attn.search.run_dir import read_run

    path = Path(run_dir)
    info = read_run(path)
    for key in ("study_name", "objectives"):
        if key not in info:
            raise _incomplete(path, f"run.json has no {key!r}")
    study = _study_settings(path)
    objectives = [(str(n), str(d)) for n, d in info["objectives"]]
    return RunInfo(run_dir=path.resolve(), study_name=str(info["study_name"]),
                   run_id=str(info.get("run_id", "")), objectives=objectives,
                   data=dict(study["data"]), train=dict(study["train"]),
                   input_size=_input_size(study), trials=_trials_table(path, info),
                   latency_table=(study.get("latency") or {}).get("table"))


# -- planning ---------------------------------------------------------------------------------


def bundle_name(number: int, retrain: bool, epochs: int | None, seeds: Any) -> str:
    """``trial-<N>`` or ``trial-<N>-retrain-e<E>x<K>`` (K seeds; pure)."""
    from nas_attn.config import parse_seeds

    k = len(parse_seeds(seeds, "--seeds"))
    return f"trial-{number}-retrain-e{epochs}x{k}" if retrain else f"trial-{number}"


def plan(selections: Sequence[Any], root: Path, out: str | Path | None, names: Sequence[str],
         force: bool) -> list[Planned]:
    """The output path of every selection, checked before anything is trained or written."""
    from nas_attn.export.bundle import check_target, resolve_output

    planned: list[Planned] = []
    for sel, name in zip(selections, names, strict=True):
        if out is None:
            rel: str | Path = name
        elif len(selections) == 1:
            rel = out
        else:
            rel = Path(out) / name
        target = resolve_output(rel, root)
        if out is not None and len(selections) > 1:
            resolve_output(out, root)  # the group folder itself must stay inside too
        check_target(target, force)
        planned.append(Planned(sel, target))
    seen: dict[Path, int] = {}
    for p in planned:
        if p.target in seen:
            raise ConfigError("-o", str(out), f"trials {seen[p.target]} and "
                              f"{p.selection.number} would be written to the same place")
        seen[p.target] = p.selection.number
    return planned


# -- weights ----------------------------------------------------------------------------------


def read_checkpoint(path: Path, spec_hash: str) -> dict[str, Any]:
    """The state dict of a trial checkpoint, after checking it belongs to ``spec_hash``."""
    from safetensors import safe_open

    from nas_attn.weights import read_safetensors

    state = read_safetensors(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    try:
        info = json.loads(meta.get("nas_attn", "{}"))
    except ValueError:
        info = {}
    if info.get("format") != _CHECKPOINT_FORMAT or info.get("spec_hash") != spec_hash:
        raise ConfigError(str(path), info.get("spec_hash"), f"not the checkpoint of spec "
                          f"{spec_hash}; delete it or export with --retrain")
    return state


def _objectives_of(row: Mapping[str, Any], objectives: Sequence[tuple[str, str]]
                   ) -> dict[str, float]:
    out = {}
    for name, _ in objectives:
        v = row.get(name)
        if is_finite_number(v):
            out[name] = float(v)
    return out


def _weights_for(p: Planned, run: RunInfo, retrain: bool, epochs: int | None, seeds: Any,
                 data: Callable[[], Any], say: Callable[[str], None]
                 ) -> tuple[Any, dict[str, Any]]:
    """(state dict or model, metadata) for one planned bundle."""
    from nas_attn.export import retrain as rt
    from nas_attn.search.trainable import checkpoint_path

    sel = p.selection
    row = sel.row
    spec_hash = str(row.get("spec_hash") or "")
    seed = int(run.train.get("seed", 0))
    search_obj = _objectives_of(row, run.objectives)
    costs = {k: v for k, v in search_obj.items() if k != ACCURACY}
    trial = {"study": run.study_name, "number": sel.number, "run_dir": str(run.run_dir),
             "run_id": run.run_id, "spec_hash": spec_hash,
             "search_objectives": search_obj}
    if row.get("reused_from") is not None:
        trial["reused_from"] = row["reused_from"]
    meta: dict[str, Any] = {
        "directions": dict(run.objectives), "dataset": run.data, "front": dict(sel.front),
    }
    ckpt = checkpoint_path(run.run_dir, spec_hash, seed) if spec_hash else None
    if not retrain and ckpt is not None and ckpt.is_file():
        say(f"trial {sel.number}: weights from {ckpt.relative_to(run.run_dir)}")
        state = read_checkpoint(ckpt, spec_hash)
        trial["checkpoint"] = str(ckpt.relative_to(run.run_dir))
        meta.update(objectives=search_obj, seed=seed, trial=trial,
                    training={**run.train, "weights": "search checkpoint"})
        return state, meta
    epochs_used = int(epochs if retrain and epochs else run.train["epochs"])
    seed_values = rt.seed_list(seed, seeds if retrain else 1)
    why = "--retrain" if retrain else "no checkpoint in the run folder"
    say(f"trial {sel.number}: training {epochs_used} epoch(s) x {len(seed_values)} seed(s) "
        f"({why})")
    result = rt.retrain(sel.spec, data(), run.train, seed_values, epochs_used, run.objectives,
                        costs, on_seed=lambda r: say(
                            f"  seed {r.seed}: val {100 * r.val_accuracy:.2f}%"))
    first = result.runs[0]
    objectives = {**costs, ACCURACY: first.val_accuracy}
    objectives = {n: objectives[n] for n, _ in run.objectives if n in objectives}
    meta.update(objectives=objectives, seed=first.seed, trial=trial,
                training={**run.train, "epochs": epochs_used,
                          "weights": f"retrained in-process ({why})"})
    if retrain:
        report = result.report()
        meta["extra"] = {"retrain": report}
        meta["notes"] = rt.render_notes(report)
    return result.model, meta


# -- the export -------------------------------------------------------------------------------


def _made_dirs(path: Path) -> list[Path]:
    """The folders ``path.mkdir(parents=True)`` would create, outermost first."""
    made = []
    p = path
    while not p.exists():
        made.append(p)
        p = p.parent
    return made[::-1]


def _rmdirs(dirs: Sequence[Path]) -> None:
    for d in reversed(dirs):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass


def export_from_run(run_dir: str | Path, picks: str | Sequence[str],
                    out: str | Path | None = None, retrain: bool = False,
                    epochs: int | None = None, seeds: Any = 1, force: bool = False, *,
                    root: str | Path | None = None,
                    say: Callable[[str], None] | None = None) -> list[Path]:
    """Export the trials ``picks`` select from the run in ``run_dir``; returns bundle paths.

    ``out``: the bundle path (one bundle) or the folder of bundles (several), relative to
    ``root`` (default ``RUN_DIR/exports``) and inside it. ``retrain``: train from scratch for
    ``epochs`` (default: the study's) with ``seeds`` (K seeds from the study's, or a list) and
    record mean and 95% CI.
    ``say``: a progress callback (one line per step). Raises ConfigError (nothing written)
    for an unknown or incomplete run folder, a pick that selects nothing, an output path
    that exists (without ``force``) or escapes ``root``.
    """
    from nas_attn.export import retrain as rt
    from nas_attn.export.bundle import check_target, commit_bundle, export_bundle
    from nas_attn.export.picks import select

    say = say or (lambda _msg: None)
    rt.check_retrain_args(epochs, seeds)
    if not retrain and (epochs is not None or seeds not in (1, "1")):
        raise ConfigError("--epochs" if epochs is not None else "--seeds",
                          epochs if epochs is not None else seeds, "only with --retrain")
    run = read_run_info(run_dir)
    selections = select(run.trials, picks, run.objectives)
    base = Path(root).expanduser() if root is not None else run.run_dir / EXPORTS
    base_made = _made_dirs(base.resolve()) if not base.exists() else []
    names = [bundle_name(s.number, retrain, epochs or int(run.train["epochs"]), seeds)
             for s in selections]
    planned = plan(selections, base, out, names, force)

    cache: dict[str, Any] = {}

    def data() -> Any:
        if "data" not in cache:
            from nas_attn.data import load_dataset

            say(f"loading data {run.data.get('name')}")
            cache["data"] = load_dataset(run.data)
        return cache["data"]

    made: list[Path] = []
    staging: Path | None = None
    committed: list[Path] = []
    try:
        base.mkdir(parents=True, exist_ok=True)
        made = list(base_made)
        staging = base.resolve() / f".export-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        staged = []
        for i, p in enumerate(planned):
            weights, meta = _weights_for(p, run, retrain, epochs, seeds, data, say)
            path = export_bundle(p.selection.spec, weights, f"b{i}", metadata=meta,
                                 input_size=run.input_size, base_dir=staging,
                                 name=p.target.name, latency_table=run.latency_table)
            staged.append(path)
        for p in planned:
            check_target(p.target, force)  # again: training took a while
        for p, path in zip(planned, staged, strict=True):
            parents = _made_dirs(p.target.parent)
            p.target.parent.mkdir(parents=True, exist_ok=True)
            made += parents
            fresh = not p.target.exists()
            commit_bundle(path, p.target)
            if fresh:
                committed.append(p.target)
    except BaseException:
        for t in committed:
            shutil.rmtree(t, ignore_errors=True)
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        _rmdirs(made)
    return [p.target for p in planned]
