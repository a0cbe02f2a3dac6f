"""Selective Depth Attention, SDA (Guo et al., IEEE TAI 2024, arXiv 2209.10327).

Follows the authors' code, QingbeiGuo/SDA-xNet ``SDA-ResNet/models/resnet/resnet_at.py``
(``BasicStage``). A fusion module wraps a whole stage of n blocks; the trunk runs unchanged
(block i+1 gets ReLU(Z_i)) and the module receives every block's pre-ReLU output Z_i:

- U = sum_i Z_i; z = ReLU(BN(Conv1x1(C -> d, no bias)(GAP(U)))), d = max(int(C * rd_ratio),
  min_dim) (the code's ``max(int(C / r), L)`` with r = 16, L = 64);
- v_i = Conv1x1(d -> C, bias)(z) for each block; a = softmax over the n blocks, per channel;
- stage output = ReLU(sum_i a_i * Z_i).

No deviations. The BN on the (N, d, 1, 1) descriptor needs a batch of more than one sample in
training mode, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nas_attn.hparams import HParam
from nas_attn.modules._common import RD_RATIO, reduced_channels
from nas_attn.modules._registry import register_module

MIN_DIM = HParam(
    "min_dim", "int", default=64, low=1, high=512, log=True,
    doc="lower bound of the descriptor width d = max(C * rd_ratio, min_dim) (the code's L = 64)",
)


def _sda_dim(channels: int, rd_ratio: float, min_dim: int) -> int:
    return max(reduced_channels(channels, rd_ratio), min_dim)


def _sda_params(
    channels: int, num_blocks: int, rd_ratio: float = 1 / 16, min_dim: int = 64
) -> int:
    d = _sda_dim(channels, rd_ratio, min_dim)
    return (num_blocks + 1) * channels * d + 2 * d + num_blocks * channels


def _sda_check(
    channels: int, num_blocks: int, rd_ratio: float = 1 / 16, min_dim: int = 64
) -> str | None:
    if num_blocks < 2:
        return f"SDA selects among the blocks of a stage and needs at least 2, got {num_blocks}"
    return None


@register_module(
    "sda",
    kind="fusion",
    hparams=(RD_RATIO, MIN_DIM),
    params=_sda_params,
    check=_sda_check,
    paper="Selective Depth Attention Networks for Adaptive Multi-scale Feature Representation, "
    "arXiv 2209.10327",
)
class SelectiveDepthAttention(nn.Module):
    def __init__(
        self, channels: int, num_blocks: int, rd_ratio: float = 1 / 16, min_dim: int = 64
    ) -> None:
        super().__init__()
        d = _sda_dim(channels, rd_ratio, min_dim)
        self.num_blocks = num_blocks
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
        )
        self.expand = nn.ModuleList(nn.Conv2d(d, channels, 1) for _ in range(num_blocks))

    def weights(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Attention over depth: (N, n_blocks, C, 1, 1), summing to 1 over the blocks."""
        if len(zs) != self.num_blocks:
            raise ValueError(f"SDA was built for {self.num_blocks} blocks, got {len(zs)} outputs")
        z = self.reduce(torch.stack(list(zs), dim=0).sum(dim=0).mean((2, 3), keepdim=True))
        return torch.stack([fc(z) for fc in self.expand], dim=1).softmax(dim=1)

    def forward(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        a = self.weights(zs)
        return F.relu((torch.stack(list(zs), dim=1) * a).sum(dim=1))
