"""Channel Reassessment Attention (Shen & Wen, 2020, arXiv 2010.05605).

p = AdaptiveAvgPool2d(S)(x) -> (N, C, S, S); a = sigmoid(Conv2d(C, C, kernel=S, groups=C,
bias=True)(p)) -> (N, C, 1, 1); out = x * a. Each channel's gate is a learned weighting of an
S x S grid of its local averages, instead of SE's single global average.

Params: C*S*S + C (S=7: 50C). Placement ``post_bn``. The default S=7 reproduces the paper's
published model sizes; the authors' code default is S=4 (``pool_size=4`` here). Deliberate
deviations: none (PyTorch default init).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import HParam
from nas_attn.modules._registry import register_module

POOL_SIZE = HParam(
    "pool_size", "int", default=7, low=1, high=14,
    doc="S: the side of the pooled grid (7 = the paper's model sizes; the code default is 4)",
)


def _cra_params(channels: int, pool_size: int = 7) -> int:
    return channels * pool_size * pool_size + channels


@register_module(
    "cra",
    kind="gate",
    hparams=(POOL_SIZE,),
    params=_cra_params,
    paper="Channel Reassessment Attention, arXiv 2010.05605",
)
class ChannelReassessmentAttention(nn.Module):
    def __init__(self, channels: int, pool_size: int = 7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.conv = nn.Conv2d(channels, channels, pool_size, groups=channels, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(self.pool(x)))
