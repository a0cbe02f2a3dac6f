"""Dataset registry, the strict :class:`DataConfig` and :func:`load_dataset`.

A dataset family registers a loader with the optional settings it understands and their
defaults; a setting given for a dataset that does not use it is a ConfigError (it would
otherwise silently do nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from nas_attn.config import (
    check_bool,
    check_float,
    check_int,
    config_from_mapping,
)
from nas_attn.data._bundle import DatasetBundle
from nas_attn.errors import ConfigError
from nas_attn.registry import Registry

# settings every dataset accepts; the others are per dataset (DatasetEntry.defaults)
COMMON_FIELDS = ("name", "seed", "augment")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how. ``None`` means "the dataset's default".

    - ``name``: a registered dataset (``cluttered-digits``, ``digits``, ``synthetic``,
      ``cifar10``, ``cifar100``, ``imagefolder``).
    - ``root``: folder holding the files (CIFAR, image folders).
    - ``download``: fetch CIFAR into ``root`` when it is missing (needs a network).
    - ``seed``: generation and split seed; the same seed gives the same tensors.
    - ``in_chans``: 1 (grey) or 3 (colour).  ``image_size``: square side in pixels.
    - ``train_size`` / ``val_size`` / ``test_size``: number of samples per split.
    - ``val_fraction`` / ``test_fraction``: image folders without such sub-folders.
    - ``num_classes``, ``signal``: synthetic data.  ``distractors``, ``noise``: clutter.
    - ``augment``: the dataset's standard training augmentation on or off.
    """

    name: str = "cluttered-digits"
    root: str | None = None
    download: bool | None = None
    seed: int = 0
    in_chans: int | None = None
    image_size: int | None = None
    num_classes: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    signal: float | None = None
    distractors: int | None = None
    noise: float | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError("data.name", self.name, "expected a dataset name", dataset_names())
        entry = DATASETS.get(self.name, "data.name")
        check_int(self.seed, "data.seed", low=0)
        check_bool(self.augment, "data.augment")
        if self.root is not None and not isinstance(self.root, str):
            object.__setattr__(self, "root", str(self.root))  # accept Path
        if self.download is not None:
            check_bool(self.download, "data.download")
        if self.in_chans is not None:
            check_int(self.in_chans, "data.in_chans")
            if self.in_chans not in (1, 3):
                raise ConfigError("data.in_chans", self.in_chans, "unsupported", [1, 3])
        check_int(self.image_size, "data.image_size", low=4, high=1024, none_ok=True)
        check_int(self.num_classes, "data.num_classes", low=2, none_ok=True)
        check_int(self.train_size, "data.train_size", low=1, none_ok=True)
        check_int(self.val_size, "data.val_size", low=1, none_ok=True)
        check_int(self.test_size, "data.test_size", low=1, none_ok=True)
        check_float(self.val_fraction, "data.val_fraction", low=0, high=0.9, low_open=True,
                    none_ok=True)
        check_float(self.test_fraction, "data.test_fraction", low=0, high=0.9, low_open=True,
                    none_ok=True)
        check_float(self.signal, "data.signal", low=0, none_ok=True)
        check_int(self.distractors, "data.distractors", low=0, high=32, none_ok=True)
        check_float(self.noise, "data.noise", low=0, high=1, none_ok=True)
        allowed = (*COMMON_FIELDS, *entry.defaults)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in allowed and v is not None:
                raise ConfigError(f"data.{f.name}", v, f"not used by dataset {self.name!r}",
                                  sorted(allowed))

    def resolved(self) -> DataConfig:
        """This config with the dataset's defaults written in for every unset setting."""
        entry = DATASETS.get(self.name, "data.name")
        return replace(self, **{k: v for k, v in entry.defaults.items()
                                if getattr(self, k) is None})

    def known_num_classes(self) -> int | None:
        """The class count known before loading: this config's, else the dataset's fixed one
        (None for a dataset whose classes are found on loading, such as an image folder)."""
        return self.resolved().num_classes or DATASETS.get(self.name, "data.name").num_classes

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[[DataConfig], DatasetBundle]
    defaults: Mapping[str, Any]  # the optional settings this dataset uses, with their defaults
    description: str = ""
    num_classes: int | None = None  # fixed by the dataset itself (CIFAR-100: 100), else None


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, *, defaults: Mapping[str, Any], description: str = "",
                     num_classes: int | None = None) -> Callable[[Callable[[DataConfig], DatasetBundle]],
                                   Callable[[DataConfig], DatasetBundle]]:
    """Register ``load(cfg) -> DatasetBundle``; ``cfg`` arrives resolved (defaults filled in)."""
    names = {f.name for f in fields(DataConfig)}
    unknown = set(defaults) - names
    if unknown:
        raise KeyError(f"dataset {name}: unknown settings {sorted(unknown)}")

    def wrap(fn: Callable[[DataConfig], DatasetBundle]) -> Callable[[DataConfig], DatasetBundle]:
        DATASETS.register(name, DatasetEntry(name, fn, dict(defaults), description, num_classes))
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load_dataset(cfg: DataConfig | Mapping[str, Any] | str | None = None) -> DatasetBundle:
    """Load a dataset as in-memory tensors. ``cfg`` is a DataConfig, a mapping with its keys,
    a dataset name, or None (the embedded default, ``cluttered-digits``)."""
    if isinstance(cfg, str):
        cfg = DataConfig(name=cfg)
    cfg = config_from_mapping(DataConfig, cfg, "data")
    resolved = cfg.resolved()
    bundle = DATASETS.get(resolved.name, "data.name").load(resolved)
    return replace(bundle, config=resolved)
