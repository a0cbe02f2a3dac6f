"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) read from the official "python version" files.

``root`` holds ``cifar-10-batches-py/`` (``data_batch_1``..``5``, ``test_batch``,
``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``), or is that folder
itself. ``download=True`` fetches the archive from the authors' site (md5-checked) when the
files are missing. The batches are pickles; they are read with an unpickler that accepts only
numpy arrays and plain containers.

Validation is a seeded holdout of ``val_size`` (default 5,000) training images; the official
test set is only for final reports. ``train_size``/``test_size`` take seeded subsets (quick
runs). Augmentation: the standard random crop with 4-pixel zero padding and horizontal flip
(He et al., arXiv 1512.03385, sec. 4.2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas_attn.data._bundle import Augmentation, DatasetBundle, channel_stats
from nas_attn.data._files import download_and_extract, load_pickle
from nas_attn.data._registry import DataConfig, register_dataset
from nas_attn.errors import ConfigError

_BASE = "https://www.cs.toronto.edu/~kriz/"
FORMATS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "labels": b"labels",
        "url": _BASE + "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "labels": b"fine_labels",
        "url": _BASE + "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "classes": 100,
    },
}
_DEFAULTS = {"root": None, "download": False, "in_chans": 3, "image_size": 32,
             "train_size": None, "val_size": 5000, "test_size": None}


def _folder(root: Path, fmt: dict) -> Path | None:
    for cand in (root / fmt["folder"], root):
        if all((cand / f).is_file() for f in fmt["train"] + fmt["test"]):
            return cand
    return None


def _read(files: list[Path], fmt: dict) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    expected = f"a CIFAR python-format batch (dict with b'data' Nx3072 uint8, {fmt['labels']!r})"
    for path in files:
        d = load_pickle(path, "data.root", expected)
        try:
            x = np.asarray(d[b"data"], dtype=np.uint8)
            y = np.asarray(d[fmt["labels"]], dtype=np.int64)
            if x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
                raise ValueError(f"data shape {x.shape}, {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= fmt["classes"]):
                raise ValueError(f"labels outside 0..{fmt['classes'] - 1}")
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError("data.root", str(path), f"corrupt batch ({e}); expected {expected}"
                              ) from None
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)


def _subset(n: int, size: int | None, rng: np.random.Generator, field: str) -> np.ndarray:
    if size is None:
        return np.arange(n)
    if size > n:
        raise ConfigError(field, size, f"only {n} images available")
    return np.sort(rng.permutation(n)[:size])


def _prepare(x: np.ndarray, cfg: DataConfig) -> torch.Tensor:
    t = torch.from_numpy(x)
    if cfg.in_chans == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        t = (t.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if cfg.image_size != 32:
        t = F.interpolate(t.float(), size=(cfg.image_size,) * 2, mode="bilinear",
                          antialias=True, align_corners=False)
        t = t.round().clamp(0, 255).to(torch.uint8)
    return t.contiguous()


def _load(name: str, cfg: DataConfig) -> DatasetBundle:
    fmt = FORMATS[name]
    expected = (f"{fmt['folder']}/ with {', '.join(fmt['train'] + fmt['test'])} "
                f"(the CIFAR python version)")
    if cfg.root is None:
        raise ConfigError("data.root", None, f"{name} needs a folder holding {expected}")
    root = Path(cfg.root).expanduser()
    folder = _folder(root, fmt)
    if folder is None and cfg.download:
        download_and_extract(fmt["url"], fmt["md5"], root)
        folder = _folder(root, fmt)
    if folder is None:
        raise ConfigError("data.root", str(root),
                          f"no {name} files found; expected {expected}"
                          + ("" if cfg.download else " (or set download: true)"))
    xtr, ytr = _read([folder / f for f in fmt["train"]], fmt)
    xte, yte = _read([folder / f for f in fmt["test"]], fmt)
    if cfg.val_size >= len(ytr):
        raise ConfigError("data.val_size", cfg.val_size, f"only {len(ytr)} training images")
    rng = np.random.default_rng([cfg.seed, 0xC1FA])
    perm = rng.permutation(len(ytr))
    val_idx, rest = np.sort(perm[:cfg.val_size]), perm[cfg.val_size:]
    tr_idx = np.sort(rest[_subset(len(rest), cfg.train_size, rng, "data.train_size")])
    te_idx = _subset(len(yte), cfg.test_size, rng, "data.test_size")
    splits = [(_prepare(x[i], cfg), torch.from_numpy(y[i]))
              for x, y, i in ((xtr, ytr, tr_idx), (xtr, ytr, val_idx), (xte, yte, te_idx))]
    classes = None
    meta_file, key = fmt["meta"]
    if (folder / meta_file).is_file():
        meta = load_pickle(folder / meta_file, "data.root", "a CIFAR meta pickle")
        names = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(names, list) and len(names) == fmt["classes"]:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    mean, std = channel_stats(splits[0][0])
    s = cfg.image_size
    aug = Augmentation(translate=max(1, s // 8), flip=True) if cfg.augment else Augmentation()
    return DatasetBundle(name, splits[0], splits[1], splits[2], fmt["classes"],
                         (cfg.in_chans, s, s), mean, std, aug, classes)


@register_dataset("cifar10", defaults=_DEFAULTS, description="CIFAR-10 from the python files",
                  num_classes=10)
def load_cifar10(cfg: DataConfig) -> DatasetBundle:
    return _load("cifar10", cfg)


@register_dataset("cifar100", defaults=_DEFAULTS, description="CIFAR-100 from the python files",
                  num_classes=100)
def load_cifar100(cfg: DataConfig) -> DatasetBundle:
    return _load("cifar100", cfg)
