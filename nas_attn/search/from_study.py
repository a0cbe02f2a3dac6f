"""Build a :class:`SearchSetup` from a study file (``nas-attn search STUDY``).

The driver side of a trial proposal, in order: ``space.suggest(trial)`` (canonical spec) ->
``spec_hash`` -> ``profile`` (params, FLOPs; latency only when it is an objective) -> the
space's constraints (a latency budget with the study's latency table's prediction). A spec
over a constraint is told FAIL ``over_budget`` and never trained.
Why not Optuna's ``constraints_func``: TPE and NSGA-II only read it on COMPLETE/PRUNED trials,
so the over-budget spec would have to be told COMPLETE with made-up objective values that then
pollute the front; a FAIL costs one cheap proposal and keeps the study truthful (the space's
constraints are the place to make such specs rare).

A study file with a top-level ``synthetic:`` mapping instead of ``space``/``data``/``train``
describes the synthetic problem of :mod:`nas_attn.search.synthetic` (runner tests and
overhead benchmarks).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import Objective
from nas_attn.search.samplers import STARTUP_SAMPLERS
from nas_attn.search.searcher import Proposal
from nas_attn.search.setup import SearchOptions, SearchSetup, synthetic_setup
from nas_attn.train_state import plain_config

EVALUATOR = "nas_attn.search.evaluators:train_and_report"


class StudyProposer:
    """``optuna.Trial -> Proposal`` for a study's space (runs in the driver)."""

    def __init__(self, study: Any) -> None:
        self.space = study.space
        self.backbone_weights = study.backbone_weights
        self.input_size = tuple(self.space.default_input_size())
        self.need_latency = any(o.name == "latency_ms" for o in study.objectives)
        self.budget = self.space.constraints.max_latency_ms is not None
        self.latency = study.latency if self.need_latency or self.budget else None
        if self.latency is not None:  # refuse a table from another machine before any trial
            from nas_attn.cost.latency_table import check_fingerprint, load_table
            from nas_attn.cost.timing import fingerprint

            self.table = load_table(self.latency.table)  # read once; grown by add_missing
            s = self.table.settings
            check_fingerprint(self.table, fingerprint(s["runtime"], s["device"], s["threads"]))

    def _latency(self, spec: Any) -> float:
        """The table's prediction; a missing cell is measured and added, or refused."""
        from nas_attn.cost.latency_table import MissingCellsError

        try:
            return self.table.predict(spec)
        except MissingCellsError:
            if self.latency.missing != "measure":
                raise
            from nas_attn.latency import add_missing

            self.table = add_missing(self.table, spec)
            return self.table.predict(spec)

    def __call__(self, trial: Any) -> Proposal:
        from nas_attn.arch import spec_hash
        from nas_attn.cost import profile
        from nas_attn.space import latency_violation

        spec = self.space.suggest(trial)
        if self.backbone_weights is not None:  # not hashed: same architecture, same hash
            spec = dataclasses.replace(spec, backbone_weights=self.backbone_weights)
        timed = self.need_latency and self.latency is None
        prof = profile(spec, input_size=self.input_size, latency=timed)
        costs = {"flops": float(prof.flops), "params": float(prof.params)}
        violations = self.space.check(spec, self.input_size)
        if self.latency is not None:
            costs["latency_ms"] = self._latency(spec)
            over = latency_violation(self.space.constraints, costs["latency_ms"])
            violations += [over] if over else []
        elif timed and getattr(prof, "latency_ms", None) is not None:
            costs["latency_ms"] = float(prof.latency_ms)
        violation = "; ".join(str(v) for v in violations) or None
        return Proposal(spec.to_dict(), spec_hash(spec), costs, violation)


def options_for(search: Any, overrides: Mapping[str, Any]) -> SearchOptions:
    base = dict(search.to_dict() if hasattr(search, "to_dict") else search)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("sampler") not in (None, *STARTUP_SAMPLERS):
        for key in ("startup_trials", "learn_from_pruned"):  # these belong to the study's
            if overrides.get(key) is None:  # own model sampler
                base[key] = None
    allowed = SearchOptions.__dataclass_fields__  # keep_checkpoints is an evaluator setting
    return SearchOptions(**{k: base[k] for k in allowed if k in base})


def setup_from_study(study: Any, overrides: Mapping[str, Any] | None = None,
                     path: str = "") -> SearchSetup:
    from nas_attn import __version__

    options = options_for(study.search, overrides or {})
    objectives = tuple(Objective(o.name, o.direction) for o in study.objectives)
    fingerprint = {**study.fingerprint_dict(), "version": __version__,
                   "early_stopping": study.early_stopping.to_dict()}
    resolved = json.loads(json.dumps(study.resolved(), default=str))
    grid = None
    if options.sampler == "grid":
        grid = study.space.grid()
    return SearchSetup(
        name=study.name, objectives=objectives, epochs=int(study.train.epochs),
        propose=StudyProposer(study), evaluator=EVALUATOR,
        evaluate_settings={"train": plain_config(study.train),
                           "data": resolved["data"],
                           "keep_checkpoints": study.search.keep_checkpoints},
        fingerprint=fingerprint, source={"kind": "study", "path": path},
        options=options, early_stopping=_halving_fields(study.early_stopping),
        resolved=resolved, grid=grid, hv_reference=space_limits(study.space),
        oneshot=study.oneshot.to_dict() if study.oneshot is not None else None)


def space_limits(space: Any) -> dict[str, float]:
    """The space's whole-network cost limits (the fixed hypervolume reference), when set."""
    limits = getattr(getattr(space, "constraints", None), "network", None)
    out = {}
    if limits is not None and limits.max_flops is not None:
        out["flops"] = float(limits.max_flops)
    if limits is not None and limits.max_params is not None:
        out["params"] = float(limits.max_params)
    budget = getattr(getattr(space, "constraints", None), "max_latency_ms", None)
    if budget is not None:
        out["latency_ms"] = float(budget)
    return out


def _halving_fields(es: Any) -> dict[str, Any]:
    """The study's early-stopping settings as HalvingConfig fields (``max_epochs`` comes from
    ``train.epochs``)."""
    from nas_attn.search.pruning import HalvingConfig

    keep = set(HalvingConfig.__dataclass_fields__) - {"max_epochs"}
    return {k: v for k, v in dict(es.to_dict()).items() if k in keep}


def setup_from_study_file(path: str | Path, overrides: Mapping[str, Any] | SearchOptions
                          | None = None, one_shot: bool = False) -> SearchSetup:
    """``one_shot``: ``--one-shot``, the study searched with the supernet (its space checked
    before anything starts)."""
    from nas_attn.yamlio import load_yaml

    if isinstance(overrides, SearchOptions):
        overrides = overrides.to_dict()
    path = Path(path)
    raw = load_yaml(path)
    if isinstance(raw, Mapping) and "synthetic" in raw:
        if one_shot:
            raise ConfigError("--one-shot", True, "a synthetic study has no space for a "
                              "supernet", ["a study with a space"])
        return _synthetic_from_mapping(raw, overrides or {}, path)
    if isinstance(raw, Mapping) and "space_hash" in raw and "source" in raw:
        from nas_attn.search.study import parse_study  # a resolved study.yaml from a run folder

        raw = {k: v for k, v in raw.items()
               if k not in ("space_hash", "source", "space_source")}
        es = dict(raw.get("early_stopping") or {})
        es.pop("rungs", None)
        raw["early_stopping"] = es
        study = parse_study(raw, path.parent, str(path))
        return setup_from_study(study, overrides, str(path))
    from nas_attn.search.study import load_study, with_oneshot

    study = load_study(path)
    return setup_from_study(with_oneshot(study) if one_shot else study, overrides, str(path))


def _synthetic_from_mapping(raw: Mapping[str, Any], overrides: Mapping[str, Any],
                            path: Path) -> SearchSetup:
    from nas_attn.search.synthetic import SyntheticProblem

    allowed = ("name", "synthetic", "early_stopping", "search", "objectives")
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{path}: {k}", k, "unknown key in a synthetic study", allowed)
    try:
        problem = SyntheticProblem.from_dict({"choices": 8, "epochs": 3, **raw["synthetic"]})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.field}", e.value, e.reason, e.choices) from None
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: synthetic", raw["synthetic"], str(e)) from None
    options = options_for(raw.get("search") or {}, overrides)
    es = dict(raw.get("early_stopping") or {"enabled": False})
    return synthetic_setup(problem, str(raw.get("name") or path.stem), options, es,
                           _synthetic_objectives(raw.get("objectives"), path))


def _synthetic_objectives(raw: Any, path: Path) -> tuple[Objective, ...] | None:
    """A synthetic study's ``objectives:``, checked as a real study's are (``flops: maximize``
    is refused) and limited to the metrics the synthetic problem reports; None: the default."""
    from nas_attn.search.study import _objectives
    from nas_attn.search.synthetic import METRICS

    if raw is None:
        return None
    try:
        parsed = _objectives(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.field}", e.value, e.reason, e.choices) from None
    for i, o in enumerate(parsed):
        if o.name not in METRICS:
            raise ConfigError(f"{path}: objectives[{i}].name", o.name,
                              "not reported by the synthetic problem", METRICS)
    return tuple(Objective(o.name, o.direction) for o in parsed)


def setup_from_source(source: Mapping[str, Any], options: SearchOptions, name: str) -> SearchSetup:
    """Rebuild a setup from ``run.json``'s ``source`` (resume)."""
    kind = source.get("kind")
    if kind == "synthetic":
        from nas_attn.search.synthetic import SyntheticProblem

        objs = tuple(Objective(n, d) for n, d in source["objectives"])
        return synthetic_setup(SyntheticProblem.from_dict(source["problem"]), name, options,
                               source.get("early_stopping"), objs)
    if kind == "study":
        return setup_from_study_file(source["path"], options)
    raise ConfigError("run.json:source.kind", kind, "unknown setup kind", ["study", "synthetic"])
