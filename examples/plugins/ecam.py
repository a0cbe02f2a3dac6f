"""ECA-M: Efficient Channel Attention over average- and max-pooled descriptors.

A variant written for the nas-attn plugin walkthrough (docs/plugins.md), not a published
module. ECA (Wang et al., CVPR 2020, arXiv 1910.03151) squeezes each channel by its global
average and mixes neighbouring channels with one 1-D convolution of kernel k; CBAM's channel
branch (Woo et al., ECCV 2018, arXiv 1807.06521) showed that a global max beside the average
helps. ECA-M runs ECA's single shared 1-D convolution over both descriptors and adds them
before the sigmoid::

    out = x * sigmoid(conv1d(avg(x)) + conv1d(max(x)))

Parameters: k + 1 (the shared kernel and a learned weight of the max branch, initialised at 1),
so it stays as cheap as ECA. Nothing else is declared: nas-attn counts the parameters on the
meta device and the FLOPs with its dispatcher counter; ``kernel_size`` is the one searchable
hyperparameter, named as the zoo names it.

    nas-attn zoo --check ecam --plugin examples/plugins/ecam.py --allow-plugins
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import HParam
from nas_attn.modules import register_module


@register_module(
    "ecam",
    kind="gate",
    hparams=(HParam("kernel_size", "categorical", default=3, choices=(3, 5, 7),
                    doc="1-D kernel over neighbouring channels"),),
    paper="written for the nas-attn walkthrough: ECA (arXiv 1910.03151) with CBAM's max branch",
)
class EfficientChannelAttentionMax(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.max_weight = nn.Parameter(torch.ones(1))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        avg = self.conv(x.mean((2, 3)).view(n, 1, c))
        mx = self.conv(x.amax((2, 3)).view(n, 1, c))
        return x * self.gate(avg + self.max_weight * mx).view(n, c, 1, 1)
