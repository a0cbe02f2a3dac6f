"""Coordinate Attention (Hou, Zhou & Feng, CVPR 2021, arXiv 2103.02907).

Follows the authors' ``CoordAtt`` (houqb/CoordAttention, coordatt.py) with inp = oup = C:
x_h = mean over W (N,C,H,1), x_w = mean over H (N,C,W,1); y = cat([x_h, x_w], dim=2);
y = h_swish(BN(Conv1x1(C -> mip, bias)(y))) with mip = max(8, C // r) and one shared BN;
split back; a_h = sigmoid(Conv1x1(mip -> C, bias)(y_h)), a_w likewise; out = x * a_w * a_h.
h_swish = x * ReLU6(x + 3) / 6, i.e. ``nn.Hardswish``; the gates are plain sigmoids.

Params: 3*C*mip + 3*mip + 2*C (C=64: 1,688; C=256: 6,680). Default placement in MobileNetV2 is
``mid``. Deliberate deviations: none (PyTorch default init, as in the authors' code).

The reduction is the zoo's ``rd_ratio`` (a fraction: mip = max(8, int(C * rd_ratio)), default
1/32); the authors' ``reduction=r`` is accepted as an alias for ``rd_ratio=1/r``. RFCAConv
(``rfaconv.py``) runs this module on its receptive-field patches.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import Alias, HParam, integer_reciprocal, reciprocal
from nas_attn.modules._common import reduced_channels
from nas_attn.modules._registry import register_module

MIN_WIDTH = 8  # the authors' mip = max(8, inp // reduction)

CA_RD_RATIO = HParam(
    "rd_ratio", "float", default=1 / 32, low=1 / 64, high=1.0, log=True,
    doc="mip = max(8, C * rd_ratio): the width of the shared 1x1 conv (1/32 = the authors' "
    "reduction 32)",
)
REDUCTION = Alias(
    "reduction", "rd_ratio", convert=reciprocal, invert=integer_reciprocal, hashed=True,
    doc="the authors' reduction r: rd_ratio = 1/r",
)


def ca_mip(channels: int, rd_ratio: float = 1 / 32) -> int:
    return max(MIN_WIDTH, reduced_channels(channels, rd_ratio))


def ca_params(channels: int, rd_ratio: float = 1 / 32) -> int:
    """Parameters of :class:`CoordinateAttention` (RFCAConv adds its own to these)."""
    mip = ca_mip(channels, rd_ratio)
    return 3 * channels * mip + 3 * mip + 2 * channels


@register_module(
    "ca",
    kind="gate",
    hparams=(CA_RD_RATIO,),
    aliases=(REDUCTION,),
    params=ca_params,
    paper="Coordinate Attention for Efficient Mobile Network Design, arXiv 2103.02907",
)
class CoordinateAttention(nn.Module):
    def __init__(self, channels: int, rd_ratio: float = 1 / 32) -> None:
        super().__init__()
        add_coordinate_layers(self, channels, rd_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return coordinate_attention(self, x)


def add_coordinate_layers(module: nn.Module, channels: int, rd_ratio: float = 1 / 32) -> None:
    """Give ``module`` CA's layers as its own attributes (``conv1``, ``bn1``, ``conv_h``,
    ``conv_w``: the authors' names, so CA and RFCAConv share one state-dict layout)."""
    mip = ca_mip(channels, rd_ratio)
    module.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
    module.bn1 = nn.BatchNorm2d(mip)
    module.act = nn.Hardswish()
    module.conv_h = nn.Conv2d(mip, channels, 1, bias=True)
    module.conv_w = nn.Conv2d(mip, channels, 1, bias=True)
    module.gate = nn.Sigmoid()


def coordinate_attention(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CA's forward with the layers :func:`add_coordinate_layers` gave ``module``."""
    h, w = x.shape[2:]
    x_h = x.mean(3, keepdim=True)  # (N, C, H, 1)
    x_w = x.mean(2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
    y = module.act(module.bn1(module.conv1(torch.cat((x_h, x_w), dim=2))))
    y_h, y_w = torch.split(y, [h, w], dim=2)
    a_h = module.gate(module.conv_h(y_h))  # (N, C, H, 1)
    a_w = module.gate(module.conv_w(y_w.transpose(2, 3)))  # (N, C, 1, W)
    return x * a_w * a_h
