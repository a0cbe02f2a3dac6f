"""Non-local block, embedded Gaussian version (Wang et al., CVPR 2018, arXiv 1711.07971).

Follows the authors' Caffe2 code, facebookresearch/video-nonlocal-net
``lib/models/nonlocal_helper.py`` (``spacetime_nonlocal``), in 2-D:

- d = C / 2; theta = Conv1x1(C -> d, bias) on x; phi, g = Conv1x1(C -> d, bias) on a 2x2,
  stride-2 max-pooled x (``sub_sample=True``, the authors' ``USE_MAXPOOL``);
- f = softmax over the key positions of theta^T phi * d^-0.5 (``USE_SCALE``);
- y = f g; out = BN(Conv1x1(d -> C, bias)(y)) + x.

Init as in the authors' config: the four convs Gaussian with std 0.01 and zero bias, the BN
weight (``BN_INIT_GAMMA``) 0, so the block is the identity at initialisation. A backbone whose
init loop resets every BatchNorm must call :meth:`NonLocal.reset_parameters` afterwards.

Deviation: the 2x2 pool uses ``ceil_mode=True`` so that odd (and 1-pixel) maps work; on even
sizes it is the authors' pool exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import HParam
from nas_attn.modules._registry import register_module

SUB_SAMPLE = HParam(
    "sub_sample", "bool", default=True,
    doc="compute phi and g on a 2x2 max-pooled map (4x fewer key positions)",
)


def _nonlocal_params(channels: int, sub_sample: bool = True) -> int:
    d = channels // 2
    return 3 * (channels * d + d) + d * channels + channels + 2 * channels


def _nonlocal_check(channels: int, sub_sample: bool = True) -> str | None:
    if channels < 2 or channels % 2:
        return f"non-local needs an even channel count (inner width C/2), got {channels}"
    return None


@register_module(
    "nonlocal",
    kind="gate",
    hparams=(SUB_SAMPLE,),
    params=_nonlocal_params,
    check=_nonlocal_check,
    paper="Non-local Neural Networks (embedded Gaussian), arXiv 1711.07971",
)
class NonLocal(nn.Module):
    def __init__(self, channels: int, sub_sample: bool = True) -> None:
        super().__init__()
        d = channels // 2
        self.inner = d
        self.theta = nn.Conv2d(channels, d, 1)
        self.phi = nn.Conv2d(channels, d, 1)
        self.g = nn.Conv2d(channels, d, 1)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Conv2d(d, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        pooled = self.pool(x)
        theta = self.theta(x).flatten(2)  # (N, d, HW)
        phi = self.phi(pooled).flatten(2)  # (N, d, HW')
        g = self.g(pooled).flatten(2)  # (N, d, HW')
        f = (torch.bmm(theta.transpose(1, 2), phi) * self.inner**-0.5).softmax(dim=-1)
        y = torch.bmm(g, f.transpose(1, 2)).view(n, self.inner, h, w)
        return self.bn(self.out(y)) + x
