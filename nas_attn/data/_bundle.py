"""The in-memory dataset every loader returns, and its batched, tensor-only augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

Split = tuple[torch.Tensor, torch.Tensor]  # (x: N,C,H,W uint8 or float; y: N int64)


@dataclass(frozen=True)
class Augmentation:
    """Random translation (zero-padded random crop of the same size) and horizontal flip.

    Works on a whole batch at once, on whatever device the batch lives, and draws every random
    number from the given ``torch.Generator``, so a seeded run is reproducible.
    ``translate=4, flip=True`` is the standard CIFAR recipe (pad 4, random crop, flip).
    """

    translate: int = 0
    flip: bool = False

    @property
    def is_identity(self) -> bool:
        return self.translate == 0 and not self.flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.is_identity:
            return x
        n, _, h, w = x.shape
        gdev = generator.device if generator is not None else x.device
        if self.translate:
            p = self.translate
            xp = F.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(x.device)
            rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H)
            cols = ox[:, None] + torch.arange(w, device=x.device)  # (N, W)
            idx = torch.arange(n, device=x.device)[:, None, None]
            # advanced indices around a slice put the indexed dims first: (N, H, W, C)
            x = xp.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]
            x = x.permute(0, 3, 1, 2).contiguous()
        if self.flip:
            m = torch.rand(n, generator=generator, device=gdev).to(x.device) < 0.5
            x = torch.where(m[:, None, None, None], x.flip(3), x)
        return x


@dataclass(frozen=True)
class DatasetBundle:
    """Train/val/test splits held in memory, with what a training loop needs to use them.

    ``x`` tensors are NCHW, ``uint8`` (0..255 pixels) or ``float32`` (already on the model's
    scale); ``mean``/``std`` are per channel on the 0..1 scale for uint8 data (on the raw scale
    for float data). ``augment`` runs on raw batches, before :meth:`normalize`.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = Augmentation()
    class_names: tuple[str, ...] | None = None
    config: Any = field(default=None, compare=False)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.augmentation(x, generator)

    def normalizer(self, device: torch.device | str | None = None):
        """A function ``raw batch -> normalised float32 batch`` with its constants on ``device``
        (built once, so the training loop pays no host-to-device copy per batch)."""
        dev = torch.device(device) if device is not None else self.train[0].device
        scale = 255.0 if self.train[0].dtype == torch.uint8 else 1.0
        std = torch.tensor(self.std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
        a = 1.0 / (scale * std)
        b = -mean / std

        def normalize(x: torch.Tensor) -> torch.Tensor:
            return x.to(torch.float32).mul_(a).add_(b) if x.dtype != torch.float32 else x * a + b

        return normalize

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalizer(x.device)(x)

    def to(self, device: torch.device | str) -> DatasetBundle:
        def mv(s: Split) -> Split:
            return s[0].to(device), s[1].to(device)

        return replace(self, train=mv(self.train), val=mv(self.val), test=mv(self.test))

    @property
    def nbytes(self) -> int:
        splits = (self.train, self.val, self.test)
        return sum(t.numel() * t.element_size() for s in splits for t in s)

    def summary(self) -> str:
        c, h, w = self.input_size
        return (f"{self.name}: {self.num_classes} classes, {c}x{h}x{w}, "
                f"train {len(self.train[1])} / val {len(self.val[1])} / test {len(self.test[1])}")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x`` (uint8 on the 0..1 scale), computed in chunks."""
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(x), 4096):
        chunk = x[i : i + 4096].to(torch.float64) / scale
        s += chunk.sum((0, 2, 3))
        s2 += chunk.pow(2).sum((0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / max(n, 1)
    std = (s2 / max(n, 1) - mean.pow(2)).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
