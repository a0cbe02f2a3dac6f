"""Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv 1709.01507).

Follows the authors' Caffe models (hujie-frank/SENet): GAP -> 1x1 conv (bias) -> ReLU -> 1x1 conv
(bias) -> sigmoid -> scale, hidden = C // 16. timm's SEModule rounds the hidden width to a multiple
of 8; here that is the opt-in ``rd_divisor=8``. The reduction ratio r of the paper is accepted
as ``reduction`` (an alias: ``reduction=16`` is ``rd_ratio=1/16``).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.modules._common import RD_DIVISOR, RD_RATIO, REDUCTION, reduced_channels
from nas_attn.modules._registry import register_module


def _se_params(channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 1) -> int:
    h = reduced_channels(channels, rd_ratio, rd_divisor)
    return 2 * channels * h + h + channels


@register_module(
    "se",
    kind="gate",
    hparams=(RD_RATIO, RD_DIVISOR),
    aliases=(REDUCTION,),
    params=_se_params,
    paper="Squeeze-and-Excitation Networks, arXiv 1709.01507",
)
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 1) -> None:
        super().__init__()
        hidden = reduced_channels(channels, rd_ratio, rd_divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))
