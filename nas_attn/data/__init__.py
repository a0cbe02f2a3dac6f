"""Datasets as in-memory tensors: :func:`load_dataset` returns a :class:`DatasetBundle`.

One family per file (``digits.py``: the embedded default ``cluttered-digits`` and plain
``digits``; ``synthetic.py``; ``cifar.py``; ``imagefolder.py``); importing this package
registers them all.
"""

from nas_attn._imports import import_family_files
from nas_attn.data._bundle import Augmentation, DatasetBundle, Split, channel_stats
from nas_attn.data._registry import (
    DATASETS,
    DataConfig,
    DatasetEntry,
    dataset_names,
    load_dataset,
    register_dataset,
)

import_family_files(__name__, __path__)

__all__ = ["DATASETS", "Augmentation", "DataConfig", "DatasetBundle", "DatasetEntry", "Split",
           "channel_stats", "dataset_names", "load_dataset", "register_dataset"]
