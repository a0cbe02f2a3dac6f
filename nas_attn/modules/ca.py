"""Coordinate Attention (Hou, Zhou & Feng, CVPR 2021, arXiv 2103.02907).

Follows the authors' ``CoordAtt`` (houqb/CoordAttention, coordatt.py) with inp = oup = C:
x_h = mean over W (N,C,H,1), x_w = mean over H (N,C,W,1); y = cat([x_h, x_w], dim=2);
y = h_swish(BN(Conv1x1(C -> mip, bias)(y))) with mip = max(8, C // reduction) and one shared BN;
split back; a_h = sigmoid(Conv1x1(mip -> C, bias)(y_h)), a_w likewise; out = x * a_w * a_h.
h_swish = x * ReLU6(x + 3) / 6, i.e. ``nn.Hardswish``; the gates are plain sigmoids.

Params: 3*C*mip + 3*mip + 2*C (C=64: 1,688; C=256: 6,680). Default placement in MobileNetV2 is
``mid``. Deliberate deviations: none (PyTorch default init, as in the authors' code).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import HParam
from nas_attn.modules._registry import register_module

REDUCTION = HParam(
    "reduction", "categorical", default=32, choices=(8, 16, 32, 64),
    doc="mip = max(8, C // reduction): the width of the shared 1x1 conv",
)


def ca_mip(channels: int, reduction: int = 32) -> int:
    return max(8, channels // reduction)


def _ca_params(channels: int, reduction: int = 32) -> int:
    mip = ca_mip(channels, reduction)
    return 3 * channels * mip + 3 * mip + 2 * channels


@register_module(
    "ca",
    kind="gate",
    hparams=(REDUCTION,),
    params=_ca_params,
    paper="Coordinate Attention for Efficient Mobile Network Design, arXiv 2103.02907",
)
class CoordinateAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        mip = ca_mip(channels, reduction)
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(mip, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x_h = x.mean(3, keepdim=True)  # (N, C, H, 1)
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat((x_h, x_w), dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = self.gate(self.conv_h(y_h))  # (N, C, H, 1)
        a_w = self.gate(self.conv_w(y_w.transpose(2, 3)))  # (N, C, 1, W)
        return x * a_w * a_h
