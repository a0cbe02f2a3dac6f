"""DANet position and channel attention (Fu et al., CVPR 2019, arXiv 1809.02983).

Follows the authors' code, junfu1115/DANet ``encoding/nn/da_att.py`` (``PAM_Module``,
``CAM_Module``):

- PAM: Q, K = Conv1x1(C -> C/8, bias), V = Conv1x1(C -> C, bias); A = softmax over key positions
  of Q^T K (no scaling); out = gamma * (V A^T) + x.
- CAM: energy = X X^T (C x C); A = softmax(rowmax(energy) - energy); out = gamma * (A X) + x.
  The ``rowmax - energy`` form is in the code, not in the paper; the code is followed.

``gamma`` is a scalar initialised to 0, so both modules are the identity at initialisation.
PAM's memory grows as (HW)^2. No deviations from the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.modules._registry import register_module


def _pam_params(channels: int) -> int:
    q = channels // 8
    return 2 * (channels * q + q) + channels * channels + channels + 1


def _pam_check(channels: int) -> str | None:
    if channels < 8 or channels % 8:
        return f"PAM needs channels divisible by 8 (query/key width C/8), got {channels}"
    return None


@register_module(
    "pam",
    kind="gate",
    params=_pam_params,
    check=_pam_check,
    paper="Dual Attention Network for Scene Segmentation (position attention), arXiv 1809.02983",
)
class PositionAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C/8)
        k = self.key(x).flatten(2)  # (N, C/8, HW)
        attn = torch.bmm(q, k).softmax(dim=-1)  # (N, HW query, HW key)
        v = self.value(x).flatten(2)  # (N, C, HW)
        out = torch.bmm(v, attn.transpose(1, 2)).view(n, c, h, w)
        return self.gamma * out + x


def _cam_params(channels: int) -> int:
    return 1


@register_module(
    "cam",
    kind="gate",
    params=_cam_params,
    paper="Dual Attention Network for Scene Segmentation (channel attention), arXiv 1809.02983",
)
class ChannelAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = x.flatten(2)  # (N, C, HW)
        energy = torch.bmm(q, q.transpose(1, 2))  # (N, C, C)
        energy = energy.amax(dim=-1, keepdim=True) - energy
        out = torch.bmm(energy.softmax(dim=-1), q).view(n, c, h, w)
        return self.gamma * out + x
