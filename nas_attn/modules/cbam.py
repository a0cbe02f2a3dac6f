"""Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv 1807.06521).

Follows the authors' code (Jongchan/attention-module, MODELS/cbam.py) and the init of their
ResNet (MODELS/model_resnet.py):

- channel gate: global average and global max pooling, one shared MLP
  ``Linear(C, h, bias) -> ReLU -> Linear(h, C, bias)``, h = C // 16; x1 = x * sigmoid(MLP(avg) +
  MLP(max));
- spatial gate on x1: ``cat([max over C, mean over C])`` (max first) -> ``Conv2d(2, 1, k,
  padding=(k-1)//2, bias=False)`` -> ``BatchNorm2d(1, momentum=0.01)`` (no ReLU) -> sigmoid.
- init as the authors' ResNet does it: spatial conv Kaiming-normal (fan_out), the spatial BN's
  weight and bias 0 (so the spatial gate is exactly 0.5 at init), every bias 0 (MLP included).

Params: the SE formula + 2*k*k + 2 (k=7: +100; C=256: 8,564). Shared names: ``rd_ratio`` (the
authors' ``reduction_ratio=16`` is accepted as an alias for 1/16) and ``kernel_size`` for the
spatial gate's kernel (``spatial_kernel``, its earlier name here, is an alias).
timm's ``CbamModule`` is a different module (no MLP bias, [mean, max] order, no BN); not used.
Deliberate deviation: the two MLP calls run as one batched call on the stacked pooled vectors
(same result, one op per layer).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import Alias, HParam, reciprocal
from nas_attn.modules._common import RD_DIVISOR, RD_RATIO, reduced_channels
from nas_attn.modules._registry import register_module

KERNEL_SIZE = HParam(
    "kernel_size", "categorical", default=7, choices=(3, 7),
    doc="kernel of the spatial gate's conv (the paper's ablation: 7 beats 3)",
)
SPATIAL_KERNEL = Alias("spatial_kernel", "kernel_size", hashed=True,
                       doc="this module's name for kernel_size before the shared vocabulary")
REDUCTION_RATIO = Alias("reduction_ratio", "rd_ratio", convert=reciprocal,
                        doc="the authors' reduction_ratio r: rd_ratio = 1/r")


def _cbam_params(
    channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 1, kernel_size: int = 7
) -> int:
    h = reduced_channels(channels, rd_ratio, rd_divisor)
    return 2 * channels * h + h + channels + 2 * kernel_size**2 + 2


class ChannelGate(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=True)
        self.gate = nn.Sigmoid()
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.stack((x.mean((2, 3)), x.amax((2, 3))))  # (2, N, C)
        logits = self.fc2(self.act(self.fc1(pooled))).sum(0)
        return x * self.gate(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        self.gate = nn.Sigmoid()
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out")
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), dim=1)
        return x * self.gate(self.bn(self.conv(s)))


@register_module(
    "cbam",
    kind="gate",
    hparams=(RD_RATIO, RD_DIVISOR, KERNEL_SIZE),
    aliases=(REDUCTION_RATIO, SPATIAL_KERNEL),
    params=_cbam_params,
    paper="CBAM: Convolutional Block Attention Module, arXiv 1807.06521",
)
class CBAM(nn.Module):
    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 1, kernel_size: int = 7
    ) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduced_channels(channels, rd_ratio, rd_divisor))
        self.spatial_gate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))
