"""Image folders: ``root/{train,val,test}/<class>/*.png|jpg``, or ``root/<class>/*`` split by
fraction.

Class names are the sorted sub-folder names of ``train`` (or of ``root``); ``val``/``test``
must use the same set. A missing ``val`` (or ``test``) folder is replaced by a seeded,
per-class holdout of ``val_fraction`` (``test_fraction``) of the training images, default 0.1
each. Images are decoded with Pillow, converted to RGB (or grey for ``in_chans=1``), resized to
``image_size`` (default 32, bicubic, aspect ratio not kept) and held in memory as uint8.
Augmentation: random crop with zero padding of 1/8 of the side and horizontal flip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nas_attn.data._bundle import Augmentation, DatasetBundle, channel_stats
from nas_attn.data._registry import DataConfig, register_dataset
from nas_attn.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_LAYOUT = "root/{train,val,test}/<class>/*.png|jpg or root/<class>/*.png|jpg"


def _scan(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {c.name: sorted(f for f in c.iterdir() if f.suffix.lower() in EXTENSIONS)
            for c in classes}


def _decode(files: list[Path], cfg: DataConfig) -> torch.Tensor:
    from PIL import Image

    s = cfg.image_size
    out = np.empty((len(files), s, s, cfg.in_chans), np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if cfg.in_chans == 1 else "RGB")
                im = im.resize((s, s), Image.Resampling.BICUBIC)
                out[i] = np.asarray(im).reshape(s, s, cfg.in_chans)
        except Exception as e:
            raise ConfigError("data.root", str(f),
                              f"cannot decode image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _flatten(scan: dict[str, list[Path]], classes: list[str]) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for ci, c in enumerate(classes):
        files += scan.get(c, [])
        labels += [ci] * len(scan.get(c, []))
    return files, np.asarray(labels, np.int64)


def _holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per-class seeded split: (kept indices, held-out indices); at least one image per class
    is held out, and at least one kept."""
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


@register_dataset(
    "imagefolder",
    defaults={"root": None, "in_chans": 3, "image_size": 32, "val_fraction": 0.1,
              "test_fraction": 0.1},
    description="images in class sub-folders, decoded with Pillow and held in memory",
)
def load_imagefolder(cfg: DataConfig) -> DatasetBundle:
    if cfg.root is None:
        raise ConfigError("data.root", None, f"imagefolder needs a folder laid out as {_LAYOUT}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError("data.root", str(root), f"not a folder; expected {_LAYOUT}")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise ConfigError("data.root", str(root), f"has {sorted(split_dirs)} but no train/; "
                          f"expected {_LAYOUT}")
    scans = {s: _scan(d) for s, d in split_dirs.items()} if split_dirs else {"train": _scan(root)}
    classes = sorted(c for c, fs in scans["train"].items() if fs)
    if len(classes) < 2:
        where = split_dirs.get("train", root)
        raise ConfigError("data.root", str(where),
                          f"found {len(classes)} class folder(s) with images "
                          f"({', '.join(EXTENSIONS)}); expected at least 2 as {_LAYOUT}")
    for s, scan in scans.items():
        extra = sorted(c for c, fs in scan.items() if fs and c not in classes)
        if extra:
            raise ConfigError("data.root", str(split_dirs[s]),
                              f"classes {extra} are not in train/", classes)
    rng = np.random.default_rng([cfg.seed, 0x1F])
    files, labels = _flatten(scans["train"], classes)
    parts: dict[str, tuple[list[Path], np.ndarray]] = {}
    for s, frac in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if s in scans:
            parts[s] = _flatten(scans[s], classes)
        else:
            if np.bincount(labels, minlength=len(classes)).min() < 2:
                raise ConfigError("data.root", str(root), f"every class needs at least 2 "
                                  f"training images to hold out a {s} split")
            keep, held = _holdout(labels, frac, rng)
            parts[s] = ([files[i] for i in held], labels[held])
            files, labels = [files[i] for i in keep], labels[keep]
    parts["train"] = (files, labels)
    splits = {s: (_decode(f, cfg), torch.from_numpy(y)) for s, (f, y) in parts.items()}
    for s, (x, _) in splits.items():
        if len(x) == 0:
            raise ConfigError("data.root", str(split_dirs.get(s, root)), f"{s} split is empty")
    mean, std = channel_stats(splits["train"][0])
    sz = cfg.image_size
    aug = Augmentation(translate=max(1, sz // 8), flip=True) if cfg.augment else Augmentation()
    return DatasetBundle("imagefolder", splits["train"], splits["val"], splits["test"],
                         len(classes), (cfg.in_chans, sz, sz), mean, std, aug, tuple(classes))
