"""The dashboard's header: what a run is (study, objectives, sampler and its notes, storage,
status, times, versions), from the study and run.json. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas_attn.objectives import Objective
from nas_attn.viz.data import objectives_of


@dataclass(frozen=True)
class RunMeta:
    study_name: str
    objectives: tuple[Objective, ...]
    run_id: str | None = None
    status: str | None = None
    seed: int | None = None
    sampler: str | None = None
    storage: str | None = None
    requested_trials: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    study_yaml: str | None = None


def run_meta(study: Any, info: Mapping[str, Any] | None = None,
             study_yaml: str | None = None) -> RunMeta:
    info = info or {}
    from nas_attn.search.samplers import learns_from_pruned

    sampler = info.get("sampler")
    options = info.get("options") or {}
    notes = []
    if options.get("startup_trials") is not None:
        notes.append(f"{options['startup_trials']} random startup trials")
    # runs before search.learn_from_pruned existed have no key: their GP ignored PRUNED trials
    if "learn_from_pruned" in options and learns_from_pruned(sampler,
                                                             options["learn_from_pruned"]):
        notes.append("learns from stopped trials")
    if sampler and notes:
        sampler = f"{sampler} ({'; '.join(notes)})"
    return RunMeta(
        study_name=str(info.get("study_name") or study.study_name),
        objectives=objectives_of(study, info),
        run_id=info.get("run_id"), status=info.get("status"), seed=info.get("seed"),
        sampler=sampler, storage=info.get("storage"),
        requested_trials=info.get("requested_trials"), started_at=info.get("started_at"),
        ended_at=info.get("ended_at"), versions=dict(info.get("versions") or {}),
        study_yaml=study_yaml,
    )
