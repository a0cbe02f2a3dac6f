"""What one ablation run trains: the base spec, the design, the seeds, the data and training.

:class:`AblationConfig` is built from the command line (``nas-attn ablate BASE ...``), from an
ablation study file (``studies/ablation_*.yaml``: a mapping with ``base`` and ``design``) or
from a run folder's ``ablation.yaml`` (resume). It is validated on construction and written
out in full next to the results, so a run can be understood and resumed from its folder alone.

BASE (:func:`resolve_base`) is one of

- a spec file (YAML/JSON, :func:`nas_attn.arch.load_spec`);
- an export bundle folder (``spec.yaml`` inside; ``card.json``'s ``dataset``/``training``
  become the default data and training when they are mappings);
- a search run folder with ``--trial N`` (that trial's spec; the run's ``study.yaml`` gives
  the default data and training, so the ablation trains the arms like the search did).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn.errors import ConfigError

if TYPE_CHECKING:
    from nas_attn.ablation.designs import Design

ABLATION_JSON = "ablation.json"  # run id, status, storage, fingerprint
ABLATION_YAML = "ablation.yaml"  # the resolved config, then the arms (derived, for people)
DERIVED_KEYS = ("arms", "jobs", "skipped", "notes")
DESIGNS = ("loo", "ofat", "factorial", "swap")
REPORTS = ("val", "test")
METRIC = {"val": "val_accuracy", "test": "test_accuracy"}
FILE_KEYS = ("name", "description", "base", "design", "factors", "modules", "include_plain",
             "seeds", "report", "data", "train", "resources")
RESOURCE_KEYS = ("max_concurrent", "cpus_per_trial", "gpus_per_trial")
BASE_KINDS = ["a spec file (YAML/JSON)", "an export bundle folder (spec.yaml inside)",
              "a search run folder with --trial N"]


# ---------------------------------------------------------------------------------------------
# BASE


@dataclass(frozen=True)
class BaseSource:
    """A resolved BASE: its canonical spec, where it came from and the data/training defaults
    it brings along (None when it brings none)."""

    spec: Mapping[str, Any]
    source: Mapping[str, Any]
    data: Mapping[str, Any] | None = None
    train: Mapping[str, Any] | None = None


def _canonical(raw: Any, where: str) -> dict[str, Any]:
    from nas_attn.arch import canonicalize

    if not isinstance(raw, Mapping) or "backbone" not in raw:
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise ConfigError("BASE", where, f"not an architecture spec (no 'backbone' key; has "
                          f"{keys})", BASE_KINDS)
    return canonicalize(raw).to_dict()


def _from_run(path: Path, trial: int | None) -> BaseSource:
    from nas_attn.search.results import load_run

    run = load_run(path)
    df = run.trials
    with_spec = df[df["spec"].notna()] if "spec" in df.columns else df.iloc[0:0]
    if trial is None:
        front = sorted(int(n) for n in run.front()["number"])
        raise ConfigError("--trial", None, f"{path} is a search run folder: say which trial to "
                          "ablate (the trials of its Pareto front; any COMPLETE trial works)",
                          front)
    rows = with_spec[with_spec["number"] == trial]
    if rows.empty:
        raise ConfigError("--trial", trial, f"no trial with a spec in {path}",
                          [int(n) for n in with_spec["number"]])
    spec = _canonical(json.loads(rows.iloc[0]["spec"]), f"{path} trial {trial}")
    data = train = None
    study_yaml = path / "study.yaml"
    if study_yaml.exists():
        from nas_attn.yamlio import load_yaml

        resolved = load_yaml(study_yaml)
        if isinstance(resolved, Mapping):
            data, train = resolved.get("data"), resolved.get("train")
    return BaseSource(spec, {"kind": "run", "path": str(path), "trial": int(trial),
                             "state": str(rows.iloc[0]["state"])}, data, train)


def _from_bundle(path: Path) -> BaseSource:
    from nas_attn.yamlio import load_yaml

    raw = load_yaml(path / "spec.yaml")
    spec = _canonical(raw.get("spec", raw) if isinstance(raw, Mapping) else raw, str(path))
    data = train = None
    card = path / "card.json"
    if card.exists():
        try:
            meta = json.loads(card.read_text())
        except json.JSONDecodeError:
            meta = {}
        if isinstance(meta.get("dataset"), Mapping) and "name" in meta["dataset"]:
            data = meta["dataset"]
        if isinstance(meta.get("training"), Mapping):
            names = {f.name for f in _train_fields()}
            train = {k: v for k, v in meta["training"].items() if k in names}
    return BaseSource(spec, {"kind": "bundle", "path": str(path)}, data, train)


def resolve_base(path: str | Path, trial: int | None = None) -> BaseSource:
    """The base spec named by ``path`` (see the module docstring); ConfigError otherwise."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("BASE", str(p), "no such file or folder", BASE_KINDS)
    if p.is_dir():
        if (p / ABLATION_JSON).exists():
            raise ConfigError("BASE", str(p), "an ablation run folder: finish it with "
                              f"nas-attn resume {p}", BASE_KINDS)
        if (p / "run.json").exists():
            return _from_run(p, trial)
        if trial is not None:
            raise ConfigError("--trial", trial, "only for a search run folder (with run.json)")
        if (p / "spec.yaml").exists():
            return _from_bundle(p)
        raise ConfigError("BASE", str(p), "a folder that is neither an export bundle (no "
                          "spec.yaml) nor a search run folder (no run.json)", BASE_KINDS)
    if trial is not None:
        raise ConfigError("--trial", trial, "only for a search run folder (with run.json)")
    from nas_attn.yamlio import load_yaml

    raw = load_yaml(p)
    if isinstance(raw, Mapping) and "spec" in raw and "backbone" not in raw:
        raw = raw["spec"]  # a trial's or a bundle's wrapper
    from nas_attn.arch import weights_relative_to

    return BaseSource(_canonical(weights_relative_to(raw, p.parent), str(p)),
                      {"kind": "spec", "path": str(p)})


def is_ablation_file(path: str | Path) -> bool:
    """Whether ``path`` is an ablation study file (a mapping with ``base`` and ``design``)."""
    p = Path(path)
    if not p.is_file() or p.suffix not in (".yaml", ".yml", ".json"):
        return False
    from nas_attn.yamlio import load_yaml

    raw = load_yaml(p)
    return isinstance(raw, Mapping) and "base" in raw and "design" in raw


# ---------------------------------------------------------------------------------------------
# the configuration


def _train_fields() -> tuple[dataclasses.Field, ...]:
    from nas_attn.train import TrainConfig

    return dataclasses.fields(TrainConfig)


def _factors(value: Any) -> list[str] | dict[str, list[Any] | None] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return {str(k): (list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
                for k, v in value.items()}
    if isinstance(value, Sequence) and all(isinstance(f, str) for f in value):
        return list(value)
    raise ConfigError("factors", value, "expected factor strings or a mapping factor -> levels")


@dataclass(frozen=True)
class AblationConfig:
    """One ablation, fully resolved (every default written out). ``train`` holds every
    :class:`~nas_attn.train.TrainConfig` field but ``seed``: each job sets its own."""

    name: str
    base: Mapping[str, Any]
    design: str
    factors: list[str] | dict[str, list[Any] | None] | None = None
    modules: tuple[str, ...] | None = None
    include_plain: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    report: str = "val"
    data: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nas_attn.config import config_from_mapping
        from nas_attn.data import DataConfig
        from nas_attn.search.setup import SearchOptions
        from nas_attn.train import TrainConfig

        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", self.name, "expected a non-empty name")
        if self.design not in DESIGNS:
            raise ConfigError("--design", self.design, "unknown design", DESIGNS)
        if self.report not in REPORTS:
            raise ConfigError("--report", self.report, "unknown metric to report", REPORTS)
        from nas_attn.config import parse_seeds

        object.__setattr__(self, "seeds", parse_seeds(self.seeds))
        object.__setattr__(self, "factors", _factors(self.factors))
        if self.design in ("ofat", "factorial") and not self.factors:
            raise ConfigError("--factors", self.factors, f"the {self.design} design needs "
                              "factors, e.g. stage1.attention or all.position=pre,post_add")
        if self.design in ("loo", "swap") and self.factors:
            raise ConfigError("--factors", self.factors, f"not used by the {self.design} design",
                              ["ofat", "factorial"])
        if self.modules is not None:
            if self.design != "swap":
                raise ConfigError("--modules", list(self.modules), "only for --design swap")
            object.__setattr__(self, "modules", tuple(self.modules))
        if self.include_plain and self.design != "loo":
            raise ConfigError("--include-plain", True, "only for --design loo")
        data = config_from_mapping(DataConfig, dict(self.data), "data").resolved()
        object.__setattr__(self, "data", data.to_dict())
        train = {k: v for k, v in dict(self.train).items() if k != "seed"}
        tcfg = config_from_mapping(TrainConfig, train, "train")
        object.__setattr__(self, "train", {k: v for k, v in dataclasses.asdict(tcfg).items()
                                           if k != "seed"})
        SearchOptions(trials=1, max_concurrent=self.max_concurrent,
                      cpus_per_trial=self.cpus_per_trial, gpus_per_trial=self.gpus_per_trial)
        object.__setattr__(self, "base", _canonical(self.base, "base"))
        self._check_data_fits()

    def _check_data_fits(self) -> None:
        from nas_attn.config import config_from_mapping
        from nas_attn.data import DataConfig

        classes = config_from_mapping(DataConfig, self.data, "data").known_num_classes()
        if classes is not None and self.base["num_classes"] != classes:
            raise ConfigError("base.num_classes", self.base["num_classes"],
                              f"the base spec's classes differ from dataset "
                              f"{self.data['name']!r}", [classes])
        chans = self.data.get("in_chans")
        if chans is not None and self.base["in_chans"] != chans:
            raise ConfigError("base.in_chans", self.base["in_chans"], f"the base spec's input "
                              f"channels differ from dataset {self.data['name']!r} (set "
                              "data.in_chans)", [chans])

    @property
    def metric(self) -> str:
        return METRIC[self.report]

    @property
    def epochs(self) -> int:
        return int(self.train["epochs"])

    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) the arms see: the data's, else the backbone's natural size."""
        from nas_attn.backbones import BACKBONES

        natural = BACKBONES.get(self.base["backbone"]).natural_input_size(
            self.base.get("backbone_args") or {})
        size = self.data.get("image_size")
        c = int(self.base["in_chans"])
        return (c, int(size), int(size)) if size else (c, *natural[1:])

    def make_design(self) -> Design:
        from nas_attn.ablation import designs

        if self.design == "loo":
            return designs.loo(self.base, include_plain=self.include_plain)
        if self.design == "swap":
            return designs.swap(self.base, self.modules)
        fn = designs.ofat if self.design == "ofat" else designs.factorial
        return fn(self.base, self.factors)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["seeds"] = list(self.seeds)
        out["modules"] = list(self.modules) if self.modules is not None else None
        return json.loads(json.dumps(out, default=str))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AblationConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ConfigError("ablation config", unknown, "unknown keys", names)
        return cls(**dict(raw))


def config_from_file(path: str | Path, overrides: Mapping[str, Any] | None = None
                     ) -> AblationConfig:
    """An :class:`AblationConfig` from an ablation study file; ``base`` is an inline spec or
    a BASE path relative to the file. ``overrides`` (CLI flags, None = keep) win."""
    from nas_attn.yamlio import load_yaml

    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), type(raw).__name__, "expected a mapping", FILE_KEYS)
    unknown = sorted(set(raw) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}", unknown, "unknown key", FILE_KEYS)
    res = raw.get("resources") or {}
    if not isinstance(res, Mapping) or set(res) - set(RESOURCE_KEYS):
        raise ConfigError(f"{path}: resources", res, "unknown resource key", RESOURCE_KEYS)
    base = raw.get("base")
    if isinstance(base, str):
        bpath = Path(base) if Path(base).is_absolute() else path.parent / base
        src = resolve_base(bpath)
        base = src.spec
    values: dict[str, Any] = {
        "name": raw.get("name") or path.stem, "description": raw.get("description") or "",
        "base": base, "design": raw.get("design"), "factors": raw.get("factors"),
        "modules": raw.get("modules"), "include_plain": bool(raw.get("include_plain", False)),
        "seeds": raw.get("seeds", 3), "report": raw.get("report", "val"),
        "data": dict(raw.get("data") or {}), "train": dict(raw.get("train") or {}),
        **{k: res[k] for k in RESOURCE_KEYS if k in res},
        "source": {"kind": "ablation_file", "path": str(path)},
    }
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k == "data" and v.get("name", values["data"].get("name")) != values["data"].get("name"):
            values[k] = dict(v)  # another dataset: the file's settings do not apply
        elif k in ("data", "train"):
            values[k] = {**values[k], **v}
        else:
            values[k] = v
    return AblationConfig(**values)


def read_config(run_dir: str | Path) -> AblationConfig:
    """The :class:`AblationConfig` written to a run folder's ``ablation.yaml``."""
    from nas_attn.yamlio import load_yaml

    path = Path(run_dir) / ABLATION_YAML
    if not path.exists():
        raise ConfigError("RUN_DIR", str(run_dir), f"not an ablation run folder (no "
                          f"{ABLATION_YAML})")
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), type(raw).__name__, "expected a mapping")
    return AblationConfig.from_dict({k: v for k, v in raw.items() if k not in DERIVED_KEYS})
