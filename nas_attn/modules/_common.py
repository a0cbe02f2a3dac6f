"""Small helpers shared by the zoo (the shared argument vocabulary lives here)."""

from __future__ import annotations

import math

from nas_attn.hparams import HParam


def make_divisible(v: float, divisor: int = 1, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` (timm's rule: never below 90% of ``v``).

    ``divisor=1`` is plain truncation ``int(v)`` with a minimum of 1, the papers' ``C // r``.
    """
    if divisor <= 1:
        return max(min_value or 1, int(v))
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def reduced_channels(channels: int, rd_ratio: float, rd_divisor: int = 1) -> int:
    """Hidden width of a squeeze MLP: ``C // r`` for ``rd_divisor=1`` (the SE paper)."""
    return make_divisible(channels * rd_ratio, rd_divisor)


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's adaptive kernel size: t = int(|log2(C) + b| / gamma); odd t, else t + 1."""
    t = int(abs(math.log2(channels) + b) / gamma)
    return t if t % 2 else t + 1


# the shared vocabulary: every module that reduces channels uses these two declarations
RD_RATIO = HParam(
    "rd_ratio", "float", default=1 / 16, low=1 / 64, high=1.0, log=True,
    doc="reduction ratio r as a fraction: hidden = C * rd_ratio (1/16 is r = 16)",
)
RD_DIVISOR = HParam(
    "rd_divisor", "categorical", default=1, choices=(1, 4, 8),
    doc="round the hidden width to a multiple of this (1 = the paper's C // r; 8 = timm)",
)
