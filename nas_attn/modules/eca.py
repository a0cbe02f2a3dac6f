"""Efficient Channel Attention (Wang et al., CVPR 2020, arXiv 1910.03151).

Follows the authors' ``eca_layer`` (BangguWu/ECANet, models/eca_module.py): y = GAP(x) seen as a
length-C sequence, ``Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)`` along the channels
(zero padding at both ends), out = x * sigmoid(y). Params: k.

``kernel_size="auto"`` is the paper's adaptive formula (gamma=2, b=1: C=64 -> 3, 128..1024 -> 5,
2048 -> 7). The authors' released ResNet-50 weights instead used k = [3, 5, 5, 7] per stage;
``kernel_size`` is set per module, so a spec reproduces that by giving each stage its own value.
The authors' name ``k_size`` is accepted as an alias.
Deliberate deviation: none (the released code's fixed default k=3 is replaced by "auto", the
paper's formula).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import Alias, HParam
from nas_attn.modules._common import eca_kernel_size
from nas_attn.modules._registry import register_module

KERNEL_SIZE = HParam(
    "kernel_size", "categorical", default="auto", choices=("auto", 1, 3, 5, 7, 9),
    doc='1-D kernel over channels; "auto" = the paper formula (gamma=2, b=1)',
)
K_SIZE = Alias("k_size", "kernel_size", hashed=True, doc="the authors' name (eca_layer(k_size=))")


def resolve_kernel_size(channels: int, kernel_size: int | str = "auto") -> int:
    """The kernel size actually used: the paper formula for "auto", else ``kernel_size``."""
    return eca_kernel_size(channels) if kernel_size == "auto" else int(kernel_size)


def _eca_params(channels: int, kernel_size: int | str = "auto") -> int:
    return resolve_kernel_size(channels, kernel_size)


@register_module(
    "eca",
    kind="gate",
    hparams=(KERNEL_SIZE,),
    aliases=(K_SIZE,),
    params=_eca_params,
    paper="ECA-Net: Efficient Channel Attention for Deep CNNs, arXiv 1910.03151",
)
class EfficientChannelAttention(nn.Module):
    def __init__(self, channels: int, kernel_size: int | str = "auto") -> None:
        super().__init__()
        k = resolve_kernel_size(channels, kernel_size)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        y = x.mean((2, 3)).view(n, 1, c)
        y = self.conv(y).view(n, c, 1, 1)
        return x * self.gate(y)
