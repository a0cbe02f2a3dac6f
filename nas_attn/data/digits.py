"""scikit-learn's 8x8 handwritten digits (UCI optdigits, 1,797 images; ships inside sklearn, no
download), plain and cluttered.

- ``digits``: each digit bilinearly upscaled to ``image_size`` (default 16). Easy: the tiny
  ResNet reaches 99-100% in 15 epochs; a smoke test, too easy to tell attention modules apart.
- ``cluttered-digits`` (the embedded default): in the spirit of cluttered MNIST (Mnih et al.,
  "Recurrent Models of Visual Attention", arXiv 1406.6247). Each sample is a ``image_size``
  canvas (default 32) holding one digit at a random scale (3/8 to 1/2 of the canvas, 12-16 px
  on 32) and position, ``distractors`` fragments (random crops of other digits, default 4),
  every object in a random colour, plus Gaussian noise (``noise``, default 0.1). The label is
  the whole digit; finding it among the fragments is what spatial and channel attention are for.

Both split by *source image* (seeded): the digits behind the test samples, and the fragments
drawn into them, never appear in train or val. Samples are generated once, deterministically
for a seed, and stored as uint8.  Three channels by default (grey replicated for ``digits``,
colour for clutter); ``in_chans=1`` gives grey.  Augmentation: a random translation of up to
1/16 of the image side (no flip: flipped digits are other symbols).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from nas_attn.data._bundle import Augmentation, DatasetBundle, channel_stats
from nas_attn.data._registry import DataConfig, register_dataset
from nas_attn.errors import ConfigError

N_SOURCES = 1797


@lru_cache(maxsize=1)
def _sources() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def source_split(seed: int, sizes: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Disjoint index sets of source images (train, val, test), seeded."""
    perm = np.random.default_rng([seed, 0x5D1]).permutation(N_SOURCES)
    ntr, nva, nte = sizes
    return perm[:ntr], perm[ntr:ntr + nva], perm[ntr + nva:ntr + nva + nte]


def _upscale(images: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(images)[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def _to_uint8(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


def _bundle(name: str, cfg: DataConfig, splits: list[tuple[torch.Tensor, torch.Tensor]]
            ) -> DatasetBundle:
    mean, std = channel_stats(splits[0][0])
    s = cfg.image_size
    aug = Augmentation(translate=max(1, s // 16)) if cfg.augment else Augmentation()
    return DatasetBundle(name, splits[0], splits[1], splits[2], 10, (cfg.in_chans, s, s),
                         mean, std, aug, tuple(str(i) for i in range(10)))


@register_dataset(
    "digits",
    num_classes=10,
    defaults={"in_chans": 3, "image_size": 16, "val_size": 360, "test_size": 360,
              "train_size": None},
    description="sklearn 8x8 digits upscaled; 1,797 images, split by image",
)
def load_digits_plain(cfg: DataConfig) -> DatasetBundle:
    images, labels = _sources()
    nva, nte = cfg.val_size, cfg.test_size
    ntr = cfg.train_size if cfg.train_size is not None else N_SOURCES - nva - nte
    if ntr + nva + nte > N_SOURCES:
        raise ConfigError("data.train_size", ntr,
                          f"train + val + test sizes exceed the {N_SOURCES} digit images")
    splits = []
    big = _upscale(images, cfg.image_size)
    for idx in source_split(cfg.seed, (ntr, nva, nte)):
        x = _to_uint8(big[idx])[:, None].expand(-1, cfg.in_chans, -1, -1).contiguous()
        splits.append((x, torch.from_numpy(labels[idx])))
    return _bundle("digits", cfg, splits)


def _render(rng: np.random.Generator, pool: np.ndarray, n: int, canvas: int, distractors: int,
            noise: float, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _sources()
    lo, hi = max(4, round(canvas * 3 / 8)), max(4, round(canvas / 2))
    glyphs = {s: _upscale(images, s) for s in range(lo, hi + 1)}
    out = np.zeros((n, 3, canvas, canvas), np.float32)
    order = np.concatenate([rng.permutation(pool) for _ in range(n // len(pool) + 1)])[:n]
    sizes = rng.integers(lo, hi + 1, (n, 1 + distractors))
    cols = rng.uniform(0.2, 1.0, (n, 1 + distractors, 3)).astype(np.float32)
    cols /= cols.max(-1, keepdims=True)
    if not colour:
        cols[:] = rng.uniform(0.6, 1.0, (n, 1 + distractors, 1)).astype(np.float32)
    others = rng.choice(pool, (n, max(distractors, 1)))
    for i in range(n):
        img = out[i]
        for k in range(distractors):
            g = glyphs[sizes[i, k + 1]][others[i, k]]
            s = g.shape[0]
            fh, fw = rng.integers(s // 3, s // 2 + 2, 2)
            y0, x0 = rng.integers(0, s - fh + 1), rng.integers(0, s - fw + 1)
            frag = g[y0:y0 + fh, x0:x0 + fw]
            py, px = rng.integers(0, canvas - fh + 1), rng.integers(0, canvas - fw + 1)
            view = img[:, py:py + fh, px:px + fw]
            np.maximum(view, cols[i, k + 1][:, None, None] * frag, out=view)
        g = glyphs[sizes[i, 0]][order[i]]
        s = g.shape[0]
        py, px = rng.integers(0, canvas - s + 1, 2)
        view = img[:, py:py + s, px:px + s]
        np.maximum(view, cols[i, 0][:, None, None] * g, out=view)
    if noise > 0:
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return out, labels[order]


@lru_cache(maxsize=4)
def _cluttered(cfg: DataConfig) -> DatasetBundle:
    sizes = (cfg.train_size, cfg.val_size, cfg.test_size)
    pools = source_split(cfg.seed, (1078, 359, 360))  # 60/20/20 of the source images
    splits = []
    for si, (pool, n) in enumerate(zip(pools, sizes, strict=True)):
        rng = np.random.default_rng([cfg.seed, si, 0xC1])
        x, y = _render(rng, pool, n, cfg.image_size, cfg.distractors, cfg.noise,
                       colour=cfg.in_chans == 3)
        if cfg.in_chans == 1:
            x = x[:, :1]
        splits.append((_to_uint8(x), torch.from_numpy(y)))
    return _bundle("cluttered-digits", cfg, splits)


@register_dataset(
    "cluttered-digits",
    num_classes=10,
    defaults={"in_chans": 3, "image_size": 32, "train_size": 6000, "val_size": 1000,
              "test_size": 1000, "distractors": 4, "noise": 0.1},
    description="one sklearn digit among coloured fragments of others on a noisy canvas",
)
def load_cluttered_digits(cfg: DataConfig) -> DatasetBundle:
    if cfg.image_size < 12:
        raise ConfigError("data.image_size", cfg.image_size, "cluttered-digits needs >= 12 px")
    return _cluttered(cfg)
