"""ResNet blocks with named insertion points (He et al., CVPR 2016, arXiv 1512.03385).

BasicBlock and Bottleneck follow torchvision's structure (stride on the 3x3 conv, "ResNet v1.5").
Positions (see docs/spec.md)::

    x ─ pre ─ conv ─ BN ─ ReLU ─ [mid] ─ ... ─ BN ─ post_bn ─┐
    │                                                        + ─ Z ─ ReLU ─ post_add ─> out
    └──────────── shortcut (projection or identity) ─ identity ┘

``identity`` sits on the shortcut after its projection, so it always sees the block's output
channels. The replaceable 3x3 conv is BasicBlock ``conv1`` and Bottleneck ``conv2`` (the strided
one); the ``*_info`` functions give the layout without building anything, and the blocks build
from the same facts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas_attn.backbones._net import BlockPlan, ResidualBlock, make_conv, make_gates
from nas_attn.backbones._registry import BlockInfo


def basic_info(inplanes: int, planes: int, stride: int) -> BlockInfo:
    return BlockInfo(
        positions={"pre": inplanes, "mid": planes, "post_bn": planes, "post_add": planes,
                   "identity": planes},
        conv=(inplanes, planes, stride),
    )


def bottleneck_info(inplanes: int, planes: int, stride: int) -> BlockInfo:
    out = planes * Bottleneck.expansion
    return BlockInfo(
        positions={"pre": inplanes, "mid": planes, "post_bn": out, "post_add": out,
                   "identity": out},
        conv=(planes, planes, stride),
    )


def projection(inplanes: int, out: int, stride: int) -> nn.Sequential:
    """torchvision's downsample: 1x1 conv (stride) + BN."""
    return nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class PadShortcut(nn.Module):
    """Parameter-free shortcut ("option A" of He et al. for CIFAR): subsample by ``stride`` and
    zero-pad the new channels, half before and half after."""

    def __init__(self, inplanes: int, out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.lo = (out - inplanes) // 2
        self.hi = out - inplanes - self.lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.lo, self.hi))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs; ``conv1`` (strided) is the replaceable one."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, plan: BlockPlan | None = None) -> None:
        super().__init__()
        plan = plan or BlockPlan()
        self.conv1 = make_conv(plan.conv, inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.attn = make_gates(basic_info(inplanes, planes, stride), plan.gates)

    def forward_z(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(self.gate("pre", x))))
        out = self.gate("mid", out)
        out = self.gate("post_bn", self.bn2(self.conv2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + self.gate("identity", shortcut)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided, replaceable ``conv2``), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, plan: BlockPlan | None = None) -> None:
        super().__init__()
        plan = plan or BlockPlan()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = make_conv(plan.conv, planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.attn = make_gates(bottleneck_info(inplanes, planes, stride), plan.gates)

    def forward_z(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(self.gate("pre", x))))
        out = self.gate("mid", self.relu(self.bn2(self.conv2(out))))
        out = self.gate("post_bn", self.bn3(self.conv3(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + self.gate("identity", shortcut)
