"""Study files: a search space, the data, the training recipe, the objectives and the budget.

::

    name: quickstart
    plugins: [my_attn.py]                     # optional: user modules (needs --allow-plugins)
    space: ../search_spaces/quickstart.yaml   # relative to this file, or an inline mapping
    backbone_weights: r18.safetensors         # optional: every trial starts from these weights
    data: {name: cluttered-digits, ...}       # nas_attn.data.DataConfig
    train: {epochs: 6, batch_size: 128, ...}  # nas_attn.train.TrainConfig
    objectives:                               # default: val_accuracy max, flops min
      - {name: val_accuracy, direction: maximize}
      - {name: flops, direction: minimize}
    early_stopping: {enabled: true, eta: 3, grace_epochs: 1}
    search: {trials: 24, sampler: tpe, seed: 0, max_concurrent: 2, cpus_per_trial: 1,
             gpus_per_trial: 0}
    evaluator: supernet                       # optional: one-shot search (docs/one-shot.md)
    oneshot: {mode: spos, epochs: 20}         # search.oneshot_plan.OneShotSettings

:func:`load_study` returns a frozen :class:`StudyConfig`; every mistake is a ConfigError naming the
field (and the file). ``resolved()`` is the plain dict with every default written out (the runner
stores it next to the results); ``fingerprint_dict()`` holds what must not change between runs
that share an Optuna study. See docs/studies.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_attn.config import check_bool, check_float, check_int
from nas_attn.errors import ConfigError
from nas_attn.objectives import (
    DEFAULT_OBJECTIVES,
    DIRECTIONS,
    OBJECTIVES,
    Objective,
)
from nas_attn.plugins import consented, fingerprint_entry, is_file_ref, load_plugins, loaded_plugins
from nas_attn.search.oneshot_plan import parse_oneshot
from nas_attn.search.pruning import check_rule, rung_epochs
from nas_attn.search.samplers import SAMPLERS, check_learn_from_pruned, check_startup_trials
from nas_attn.train_state import plain_config

STUDY_KEYS = ("name", "description", "plugins", "space", "backbone_weights", "data", "train",
              "objectives", "early_stopping", "search", "latency", "evaluator", "oneshot")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class EarlyStopping:
    """Pareto successive halving: trials are compared at rung epochs ``grace * eta**k`` below
    ``train.epochs`` (see nas_attn.search.pruning)."""

    enabled: bool = True
    eta: int = 3
    grace_epochs: int = 1
    tie_break: str = "crowding"
    min_trials_at_rung: int | None = None
    promote: bool = False  # resume a stopped architecture when it is proposed again
    stop_dominated: bool = False  # also stop a trial dominated at the rung (see pruning)

    def __post_init__(self) -> None:
        check_rule(self)  # the checks HalvingConfig makes, with the same field names

    def rungs(self, epochs: int) -> list[int]:
        return rung_epochs(self.grace_epochs, self.eta, epochs) if self.enabled else []

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SearchSettings:
    """The budget and resources. ``max_concurrent: null`` = as many as the CPUs allow.
    ``keep_checkpoints``: keep each COMPLETE trial's final weights in the run folder
    (``checkpoints/``), so ``nas-attn export`` needs no retraining."""

    trials: int = 24
    sampler: str = "tpe"
    seed: int = 0
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    keep_checkpoints: bool = True
    startup_trials: int | None = None
    learn_from_pruned: bool | None = None

    def __post_init__(self) -> None:
        check_bool(self.keep_checkpoints, "search.keep_checkpoints")
        check_int(self.trials, "search.trials", low=1)
        if self.sampler not in SAMPLERS:
            raise ConfigError("search.sampler", self.sampler, "unknown sampler", SAMPLERS)
        check_startup_trials(self.sampler, self.startup_trials)
        check_learn_from_pruned(self.sampler, self.learn_from_pruned)
        check_int(self.seed, "search.seed", low=0)
        if self.max_concurrent is not None:
            check_int(self.max_concurrent, "search.max_concurrent", low=1)
        check_float(self.cpus_per_trial, "search.cpus_per_trial", low=0, low_open=True)
        check_float(self.gpus_per_trial, "search.gpus_per_trial", low=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LatencySettings:
    """``latency: {table: FILE, missing: refuse|measure}``: the latency_ms objective and the
    space's latency budget (``constraints: {max_latency_ms: X}``) read from a measured table
    instead of timing in the search loop. A spec with a cell the table lacks is refused, naming
    the cell, or measured and added."""

    table: str
    missing: str = "refuse"

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "missing": self.missing}

    def identity(self) -> dict[str, Any]:
        """What makes two runs' latencies comparable: the table's settings and machine (its
        cells may grow when missing cells are measured)."""
        from nas_attn.cost.latency_table import load_table

        t = load_table(self.table)
        return {"settings": dict(t.settings), "fingerprint": dict(t.fingerprint),
                "correction": {k: t.correction[k] for k in ("version", "model", "coef")
                               if k in t.correction}}


@dataclass(frozen=True)
class StudyConfig:
    name: str
    space: Any  # nas_attn.space.SearchSpace, already adapted to the data (see space_for_data)
    data: Any  # nas_attn.data.DataConfig
    train: Any  # nas_attn.train.TrainConfig
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    search: SearchSettings = field(default_factory=SearchSettings)
    description: str = ""
    source: str = ""  # the study file, when read from one
    space_source: str = ""  # the space file, when the space is a path
    latency: LatencySettings | None = None  # a latency table for the latency_ms objective
    plugins: tuple[Any, ...] = ()  # nas_attn.plugins.Plugin: the study's and the command's
    backbone_weights: str | None = None  # pretrained backbone weights every trial loads
    oneshot: Any = None  # search.oneshot_plan.OneShotSettings: `evaluator: supernet`

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def rungs(self) -> list[int]:
        return self.early_stopping.rungs(self.train.epochs)

    def resolved(self) -> dict[str, Any]:
        """Everything, defaults written out, as plain data (YAML/JSON-safe)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "space_source": self.space_source,
            "space": self.space.to_dict(),
            "space_hash": self.space.hash,
            "data": _data_dict(self.data),
            "train": plain_config(self.train),
            "objectives": [o.to_dict() for o in self.objectives],
            "early_stopping": {**self.early_stopping.to_dict(), "rungs": self.rungs},
            "search": self.search.to_dict(),
            **({"latency": self.latency.to_dict()} if self.latency else {}),
            **({"plugins": [plugin_ref(p) for p in self.plugins]} if self.plugins else {}),
            **({"backbone_weights": self.backbone_weights} if self.backbone_weights else {}),
            **({"evaluator": "supernet", "oneshot": self.oneshot.to_dict()}
               if self.oneshot else {}),
        }

    def fingerprint_dict(self) -> dict[str, Any]:
        """What makes trials comparable: objectives and directions, the space's hash, the
        training and data settings (budget, sampler and resources are not part of it)."""
        return {
            "objectives": [o.name for o in self.objectives],
            "directions": self.directions,
            "space_hash": self.space.hash,
            "train": plain_config(self.train),
            "data": _data_dict(self.data),
            **({"latency": self.latency.identity()} if self.latency else {}),
            **({"plugins": fingerprint_entry(self.plugins)} if self.plugins else {}),
            **({"backbone_weights_sha256": _sha256(self.backbone_weights)}
               if self.backbone_weights else {}),
            **({"oneshot": self.oneshot.to_dict()} if self.oneshot else {}),
        }


def _sha256(path: str) -> str:
    from nas_attn.backbones.pretrained import weights_sha256

    return weights_sha256(path)


def plugin_ref(plugin: Any) -> str:
    """How a resolved study names a plugin: a file by its absolute path, a module by name."""
    return plugin.origin if plugin.ship == plugin.origin and plugin.origin.endswith(".py") \
        else plugin.module


def _data_dict(data: Any) -> dict[str, Any]:
    return dict(sorted(data.resolved().to_dict().items()))


# ---------------------------------------------------------------------------------------------
# loading


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file; errors name the file and the field."""
    from nas_attn.yamlio import load_yaml

    path = Path(path)
    data = load_yaml(path)
    try:
        return parse_study(data, base_dir=path.parent, source=str(path))
    except ConfigError as e:
        if str(e.field).startswith(str(path)) or ".yaml:" in str(e.field):
            raise
        raise type(e)(f"{path}: {e.field}", e.value, e.reason, e.choices) from None


def parse_study(data: Any, base_dir: str | Path = ".", source: str = "") -> StudyConfig:
    """A StudyConfig from a mapping; a ``space`` path is read relative to ``base_dir``."""
    from nas_attn.config import config_from_mapping
    from nas_attn.data import DataConfig
    from nas_attn.train import TrainConfig

    if not isinstance(data, Mapping):
        raise ConfigError("study", data, "expected a mapping with keys", STUDY_KEYS)
    for k in data:
        if k not in STUDY_KEYS:
            raise ConfigError(str(k), k, "unknown key", STUDY_KEYS)
    name = data.get("name", Path(source).stem if source else None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError("name", name, "expected a name of letters, digits, '_', '.', '-' "
                          "(it names the Optuna study and the run folder)")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError("description", description, "expected a string")
    if "space" not in data:
        raise ConfigError("space", None, "missing: a search-space file path or an inline mapping")
    _load_study_plugins(data.get("plugins"), Path(base_dir))  # before the space names them
    dcfg = config_from_mapping(DataConfig, data.get("data"), "data")
    tcfg = config_from_mapping(TrainConfig, data.get("train"), "train")
    space, space_source = _space(data["space"], Path(base_dir))
    space = space_for_data(space, dcfg)
    es = _from_mapping(EarlyStopping, data.get("early_stopping"), "early_stopping")
    if es.enabled and es.grace_epochs > tcfg.epochs:
        raise ConfigError("early_stopping.grace_epochs", es.grace_epochs,
                          f"must be <= train.epochs ({tcfg.epochs})")
    search = _from_mapping(SearchSettings, data.get("search"), "search")
    if search.sampler == "grid" and space.size() == math.inf:
        raise ConfigError("search.sampler", "grid", "the grid sampler needs a finite space "
                          "(give every float range a step)", [s for s in SAMPLERS if s != "grid"])
    latency = _latency(data.get("latency"), Path(base_dir), space)
    budget = space.constraints.max_latency_ms
    if budget is not None and latency is None:
        raise ConfigError("space.constraints.max_latency_ms", budget, "a latency budget is "
                          "checked with a latency table: add `latency: {table: FILE}` to the "
                          "study (build one with `nas-attn latency build`)", ["latency.table"])
    oneshot = parse_oneshot(data.get("evaluator", "train"), data.get("oneshot"))
    if oneshot is not None:
        check_supernet_space(space)
    return StudyConfig(
        name=name, space=space, data=dcfg, train=tcfg, oneshot=oneshot,
        objectives=_objectives(data.get("objectives")), early_stopping=es, search=search,
        description=description, source=source, space_source=space_source, latency=latency,
        plugins=tuple(loaded_plugins()),
        backbone_weights=_backbone_weights(data.get("backbone_weights"), Path(base_dir), space),
    )


def check_supernet_space(space: Any) -> None:
    """Refuse, before anything starts, a space the supernet cannot hold (naming the stage and
    the choice: :func:`nas_attn.oneshot.check_space`)."""
    from nas_attn.oneshot import check_space

    check_space(space)


def with_oneshot(study: StudyConfig) -> StudyConfig:
    """``--one-shot``: the study with ``evaluator: supernet`` (its own ``oneshot`` settings,
    else the defaults), its space checked first."""
    from nas_attn.search.oneshot_plan import OneShotSettings

    check_supernet_space(study.space)
    return dataclasses.replace(study, oneshot=study.oneshot or OneShotSettings())


def _backbone_weights(raw: Any, base_dir: Path, space: Any) -> str | None:
    """The weights file, relative to the study file, checked against the plain network of
    every backbone of the space before any trial (a mismatch names the tensors)."""
    from nas_attn.arch import build_model
    from nas_attn.backbones.pretrained import resolve_path

    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ConfigError("backbone_weights", raw, "expected the path of a weights file "
                          "(.safetensors, or a torch state dict)")
    path = resolve_path(raw, base_dir)
    for key, dist in space.searched_backbone_args.items():
        raise ConfigError("backbone_weights", raw, "pretrained weights fit one layout of the "
                          f"backbone; the space searches backbone_args.{key} over "
                          f"{dist.to_plain()}: fix it to the weights' value")
    for backbone in space.backbones:
        build_model({"backbone": backbone, "backbone_args": dict(space.backbone_args),
                     "num_classes": space.num_classes, "in_chans": space.in_chans,
                     "backbone_weights": path})
    return path


def _load_study_plugins(raw: Any, base_dir: Path) -> None:
    """Load the study's ``plugins:`` (files relative to the study file) with the process's
    consent; refused, naming the plugin and the flag, before anything is imported."""
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(r, str) and r for r in raw):
        raise ConfigError("plugins", raw, "expected a list of plugin files or module names")
    refs = [str(base_dir / r) if is_file_ref(r) and not Path(r).is_absolute() else r
            for r in raw]
    load_plugins(refs, allowed=consented())


def _latency(raw: Any, base_dir: Path, space: Any) -> LatencySettings | None:
    from nas_attn.cost.latency_table import MISSING, load_table

    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "table" not in raw:
        raise ConfigError("latency", raw, "expected a mapping with a table file",
                          ["table", "missing"])
    for k in raw:
        if k not in ("table", "missing"):
            raise ConfigError(f"latency.{k}", k, "unknown key", ["table", "missing"])
    missing = raw.get("missing", "refuse")
    if missing not in MISSING:
        raise ConfigError("latency.missing", missing, "unknown policy", MISSING)
    path = Path(str(raw["table"]))
    path = path if path.is_absolute() else base_dir / path
    table = load_table(path)
    size = tuple(space.default_input_size())
    if table.input_size != size:
        raise ConfigError("latency.table", str(path), f"measured at input size "
                          f"{list(table.input_size)}, the study's data are {list(size)}")
    return LatencySettings(str(path), missing)


def space_for_data(space: Any, data: Any) -> Any:
    """The space with the data's channels, image size and (when the config knows it) class
    count. A dataset whose class count is only known once loaded (CIFAR-100, image folders)
    is adapted by the runner with ``space.with_data(num_classes=bundle.num_classes)``."""
    r = data.resolved()
    in_chans = r.in_chans or space.in_chans
    size = r.image_size
    return space.with_data(
        num_classes=data.known_num_classes() or space.num_classes,
        in_chans=in_chans,
        input_size=(in_chans, size, size) if size else None,
    )


def _space(raw: Any, base_dir: Path) -> tuple[Any, str]:
    from nas_attn.space import load_space, parse_space

    if isinstance(raw, str):
        path = (base_dir / raw) if not Path(raw).is_absolute() else Path(raw)
        return load_space(path), str(path)
    if isinstance(raw, Mapping):
        try:
            return parse_space(raw), ""
        except ConfigError as e:
            raise type(e)(f"space.{e.field}", e.value, e.reason, e.choices) from None
    raise ConfigError("space", raw, "expected a search-space file path or an inline mapping")


def _objectives(raw: Any) -> tuple[Objective, ...]:
    if raw is None:
        return DEFAULT_OBJECTIVES
    if not isinstance(raw, list) or not raw:
        raise ConfigError("objectives", raw, "expected a non-empty list of {name, direction}",
                          list(OBJECTIVES))
    out: list[Objective] = []
    for i, item in enumerate(raw):
        f = f"objectives[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f, item, "expected {name, direction}", list(OBJECTIVES))
        for k in item:
            if k not in ("name", "direction"):
                raise ConfigError(f"{f}.{k}", k, "unknown key", ["name", "direction"])
        name = item.get("name")
        if name not in OBJECTIVES:
            raise ConfigError(f"{f}.name", name, "unknown objective", list(OBJECTIVES))
        natural = OBJECTIVES[name]
        direction = item.get("direction", natural)
        if direction not in DIRECTIONS:
            raise ConfigError(f"{f}.direction", direction, "unknown direction", DIRECTIONS)
        if direction != natural:
            raise ConfigError(f"{f}.direction", direction, f"{name} is always {natural}d",
                              [natural])
        if any(o.name == name for o in out):
            raise ConfigError(f"{f}.name", name, "objective given twice")
        out.append(Objective(name, direction))
    return tuple(out)


def _from_mapping(cls: type, raw: Any, field: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(field, raw, "expected a mapping")
    names = [f.name for f in dataclasses.fields(cls)]
    for k in raw:
        if k not in names:
            raise ConfigError(f"{field}.{k}", k, "unknown key", names)
    return cls(**dict(raw))


def load_space_or_study(path: str | Path) -> Any:
    """The search space of a file: a space file, or a study file's space adapted to its data."""
    from nas_attn.space import load_space
    from nas_attn.yamlio import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError("FILE", str(path), "no such file")
    data = load_yaml(path)
    if isinstance(data, dict) and "space" in data and "backbone" not in data:
        return load_study(path).space
    return load_space(path)
