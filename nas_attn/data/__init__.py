"""Datasets as in-memory tensors: :func:`load_dataset` returns a :class:`DatasetBundle`.

One family per file (``digits.py``: the embedded default ``cluttered-digits`` and plain
``digits``; ``synthetic.py``; ``cifar.py``; ``imagefolder.py``); importing this package
registers them all.
"""

import importlib
import pkgutil

from nas_attn.data._bundle import Augmentation, DatasetBundle, Split, channel_stats
from nas_attn.data._registry import (
    DATASETS,
    DataConfig,
    DatasetEntry,
    dataset_names,
    load_dataset,
    register_dataset,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["DATASETS", "Augmentation", "DataConfig", "DatasetBundle", "DatasetEntry", "Split",
           "channel_stats", "dataset_names", "load_dataset", "register_dataset"]
