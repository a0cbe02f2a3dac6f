"""Small helpers shared by the zoo (the shared argument vocabulary lives here)."""

from __future__ import annotations

import math

from nas_attn.hparams import Alias, HParam, reciprocal

# guards int() against float error in products such as 100 * 0.29 = 28.999999999999996
_EPS = 1e-6


def make_divisible(
    v: float, divisor: int = 1, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (timm's ``make_divisible``).

    ``divisor=1`` is plain truncation ``int(v)`` with a minimum of 1, the papers' ``C // r``.
    With a divisor, a result below ``round_limit * v`` is bumped up by one divisor (timm's rule;
    timm's attention layers pass ``round_limit=0``, i.e. never bump).
    """
    if divisor <= 1:
        return max(min_value or 1, int(v + _EPS))
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def reduced_channels(channels: int, rd_ratio: float, rd_divisor: int = 1) -> int:
    """Hidden width of a squeeze MLP: ``C // r`` for ``rd_divisor=1`` (the SE paper).

    With ``rd_divisor > 1`` the width is rounded as timm's SEModule/CbamModule do
    (nearest multiple, at least one divisor, ``round_limit=0``).
    """
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)


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
# the papers' reduction ratio r as an alias of rd_ratio (not hashed: rd_ratio was always the name)
REDUCTION = Alias("reduction", "rd_ratio", convert=reciprocal,
                  doc="the paper's reduction ratio r: rd_ratio = 1/r")
