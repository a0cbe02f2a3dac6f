"""Random tensors of any shape and class count, for speed tests and plumbing checks.

``x = noise + signal * prototype[y]``: Gaussian noise plus, when ``signal > 0``, a fixed random
per-class pattern, so a model can learn the task (``signal=0``: pure noise, chance accuracy).
Float32, already standardised (mean 0, std 1 are passed through); no augmentation.
"""

from __future__ import annotations

import torch

from nas_attn.data._bundle import Augmentation, DatasetBundle
from nas_attn.data._registry import DataConfig, register_dataset


@register_dataset(
    "synthetic",
    defaults={"in_chans": 3, "image_size": 32, "num_classes": 10, "train_size": 2048,
              "val_size": 512, "test_size": 512, "signal": 1.0},
    description="Gaussian noise plus an optional learnable per-class pattern",
)
def load_synthetic(cfg: DataConfig) -> DatasetBundle:
    g = torch.Generator().manual_seed(cfg.seed)
    shape = (cfg.in_chans, cfg.image_size, cfg.image_size)
    protos = torch.randn((cfg.num_classes, *shape), generator=g)
    splits = []
    for n in (cfg.train_size, cfg.val_size, cfg.test_size):
        y = torch.randint(0, cfg.num_classes, (n,), generator=g)
        x = torch.randn((n, *shape), generator=g)
        if cfg.signal:
            x += cfg.signal * protos[y]
        splits.append((x, y))
    c = cfg.in_chans
    return DatasetBundle("synthetic", splits[0], splits[1], splits[2], cfg.num_classes, shape,
                         (0.0,) * c, (1.0,) * c, Augmentation())
