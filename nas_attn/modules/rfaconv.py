"""Receptive-Field Attention convolutions (Zhang et al., 2023, arXiv 2304.03198).

Follows the authors' classification code, Liuchen1997/RFAConv ``classification/RFAresnet.py``
(``RFAConv``), ``classification/RFCAresnet.py`` (``RFCAConv``) and
``classification/RFCBAMresnet.py`` (``RFCBAMConv``); the repo's ``model.py`` defines RFAConv
twice and has typos in RFCBAMConv, so it is not used. Each module is a drop-in for
``Conv2d(C, O, k, stride, padding=k//2)`` with the same output shape.

Common part: the receptive-field features F = ReLU(BN(Conv2d(C, C*k^2, k, stride, padding=k//2,
groups=C, no bias)(x))), rearranged so each k^2 group becomes a k x k patch, (N, C, k*H', k*W');
the output is Conv2d(C, O, kernel=k, stride=k, bias=True) of the attended patches.

- ``rfaconv``: weights A = GroupConv1x1(C -> C*k^2, groups=C, no bias)(AvgPool2d(k, stride,
  padding=k//2)(x)), softmax over the k^2 positions of each patch; G = F * A.
- ``rfcaconv``: Coordinate Attention on the patch map (the zoo's ``ca`` module, ``ca.py``):
  pooled along W and H, one shared Conv1x1(C -> mip, bias) + BN + h-swish, then
  Conv1x1(mip -> C, bias) + sigmoid per direction; mip = max(8, int(C * rd_ratio)), rd_ratio
  default 1/32 (the code's ``reduction=32``, accepted as an alias).
- ``rfcbamconv``: SE channel weights from x, Linear(C -> rd_channels, no bias) -> ReLU ->
  Linear(rd_channels -> C, no bias) -> sigmoid, applied to the patch map; spatial weights
  sigmoid(Conv2d(2, 1, 3, padding=1, no bias)([max, mean] over channels of the unweighted patch
  map)). The authors' SE takes ``ratio=16`` but uses it as the hidden *width* (16 units, not
  C/16); the code is followed, and the width is the ``rd_channels`` hyperparameter.

Parameters use PyTorch's default init (the authors' ResNets re-initialise convs themselves).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from nas_attn.hparams import HParam
from nas_attn.modules._registry import register_module
from nas_attn.modules.ca import (
    CA_RD_RATIO,
    REDUCTION,
    add_coordinate_layers,
    ca_params,
    coordinate_attention,
)

RD_CHANNELS = HParam(
    "rd_channels", "int", default=16, low=1, high=256, log=True,
    doc="hidden width of RFCBAM's SE (the authors' code uses 16 units, whatever C is)",
)


def _rf_features(in_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Per-channel receptive-field features: (N, C, H, W) -> (N, C*k^2, H', W')."""
    ck2 = in_channels * kernel_size**2
    return nn.Sequential(
        nn.Conv2d(in_channels, ck2, kernel_size, stride, kernel_size // 2,
                  groups=in_channels, bias=False),
        nn.BatchNorm2d(ck2),
        nn.ReLU(inplace=True),
    )


def _to_patches(t: torch.Tensor, channels: int, k: int) -> torch.Tensor:
    """(N, C*k^2, H, W) -> (N, C, k*H, k*W): each k^2 group becomes a k x k patch."""
    n, _, h, w = t.shape
    t = t.view(n, channels, k, k, h, w).permute(0, 1, 4, 2, 5, 3)
    return t.reshape(n, channels, h * k, w * k)


def _common_params(in_channels: int, out_channels: int, kernel_size: int) -> int:
    k2 = kernel_size**2
    features = in_channels * k2 * k2 + 2 * in_channels * k2  # grouped kxk conv + BN
    return features + out_channels * in_channels * k2 + out_channels  # patch conv


def _rfa_params(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> int:
    return in_channels * kernel_size**2 + _common_params(in_channels, out_channels, kernel_size)


@register_module(
    "rfaconv",
    kind="conv",
    params=_rfa_params,
    paper="RFAConv: Innovating Spatial Attention and Standard Convolutional Operation, "
    "arXiv 2304.03198",
)
class RFAConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1) -> None:
        super().__init__()
        self.k = kernel_size
        self.get_weight = nn.Sequential(
            nn.AvgPool2d(kernel_size, stride, kernel_size // 2),
            nn.Conv2d(in_channels, in_channels * kernel_size**2, 1, groups=in_channels,
                      bias=False),
        )
        self.features = _rf_features(in_channels, kernel_size, stride)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        k2 = self.k**2
        weight = self.get_weight(x)
        h, w = weight.shape[2:]
        weight = weight.view(n, c, k2, h, w).softmax(dim=2)
        feature = self.features(x).view(n, c, k2, h, w)
        return self.conv(_to_patches((feature * weight).view(n, c * k2, h, w), c, self.k))


def _rfca_params(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 rd_ratio: float = 1 / 32) -> int:
    return ca_params(in_channels, rd_ratio) + _common_params(in_channels, out_channels, kernel_size)


@register_module(
    "rfcaconv",
    kind="conv",
    hparams=(CA_RD_RATIO,),
    aliases=(replace(REDUCTION, hashed=False),),
    params=_rfca_params,
    paper="RFAConv (RFCAConv variant: coordinate attention on receptive fields), arXiv 2304.03198",
)
class RFCAConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, rd_ratio: float = 1 / 32) -> None:
        super().__init__()
        self.k = kernel_size
        self.features = _rf_features(in_channels, kernel_size, stride)
        add_coordinate_layers(self, in_channels, rd_ratio)  # CA's layers, CA's names
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = _to_patches(self.features(x), x.shape[1], self.k)
        return self.conv(coordinate_attention(self, g))


def _rfcbam_params(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                   rd_channels: int = 16) -> int:
    se = 2 * in_channels * rd_channels
    spatial = 2 * 3 * 3
    return se + spatial + _common_params(in_channels, out_channels, kernel_size)


@register_module(
    "rfcbamconv",
    kind="conv",
    hparams=(RD_CHANNELS,),
    params=_rfcbam_params,
    paper="RFAConv (RFCBAMConv variant: CBAM-style attention on receptive fields), "
    "arXiv 2304.03198",
)
class RFCBAMConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, rd_channels: int = 16) -> None:
        super().__init__()
        self.k = kernel_size
        self.features = _rf_features(in_channels, kernel_size, stride)
        self.se = nn.Sequential(
            nn.Linear(in_channels, rd_channels, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(rd_channels, in_channels, bias=False),
            nn.Sigmoid(),
        )
        self.spatial = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        channel = self.se(x.mean(dim=(2, 3)))[:, :, None, None]
        g = _to_patches(self.features(x), c, self.k)
        pooled = torch.cat([g.amax(dim=1, keepdim=True), g.mean(dim=1, keepdim=True)], dim=1)
        return self.conv(g * channel * torch.sigmoid(self.spatial(pooled)))
