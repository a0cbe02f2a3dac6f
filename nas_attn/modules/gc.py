"""Global Context block (Cao et al., ICCVW 2019, arXiv 1904.11492).

Follows GCNet's ``ContextBlock`` (xvjiarui/GCNet, mmdet/ops/gcb/context_block.py) with
``pooling_type="att"`` and one fusion type:

- context modelling: mask = softmax over the H*W positions of ``Conv1x1(C -> 1, bias)(x)``;
  context = sum_j mask_j * x_j -> (N, C, 1, 1);
- transform: ``Conv1x1(C -> P, bias) -> LayerNorm([P, 1, 1]) -> ReLU -> Conv1x1(P -> C, bias)``,
  P = int(C * rd_ratio) (the code's ``ratio``, accepted as an alias);
- fusion ``channel_add``: out = x + transform(context); ``channel_mul``: out = x *
  sigmoid(transform(context)).
- init as ``reset_parameters`` there: the mask conv Kaiming-normal (fan_in, bias 0), the last
  transform conv zero (weight and bias). So ``channel_add`` is the identity at init and
  ``channel_mul`` (zero-initialised too in the authors' code) gives 0.5 * x at init.

Params: 2*C*P + 3*P + 2*C + 1. The authors' ResNet placement is ``post_bn`` in stages 2-4.
timm's "gc" is a different variant (not used). Deliberate deviations: none; the paper's
combined ("channel_add" + "channel_mul") setting is left out of the search space.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.hparams import Alias, HParam
from nas_attn.modules._registry import register_module

GC_RD_RATIO = HParam(
    "rd_ratio", "categorical", default=1 / 16, choices=(1 / 16, 1 / 8, 1 / 4),
    doc="bottleneck ratio of the transform: P = int(C * rd_ratio)",
)
RATIO = Alias("ratio", "rd_ratio", hashed=True, doc="the authors' name (ContextBlock(ratio=))")
FUSION = HParam(
    "fusion", "categorical", default="channel_add", choices=("channel_add", "channel_mul"),
    doc="how the context joins the features: x + t (channel_add) or x * sigmoid(t) (channel_mul)",
)


def gc_planes(channels: int, rd_ratio: float = 1 / 16) -> int:
    return int(channels * rd_ratio + 1e-6)


def _gc_check(channels: int, rd_ratio: float = 1 / 16, fusion: str = "channel_add"
              ) -> str | None:
    if gc_planes(channels, rd_ratio) < 1:
        return f"GC needs int(channels * rd_ratio) >= 1; got int({channels} * {rd_ratio:g}) = 0"
    return None


def _gc_params(channels: int, rd_ratio: float = 1 / 16, fusion: str = "channel_add") -> int:
    p = gc_planes(channels, rd_ratio)
    return 2 * channels * p + 3 * p + 2 * channels + 1


@register_module(
    "gc",
    kind="gate",
    hparams=(GC_RD_RATIO, FUSION),
    aliases=(RATIO,),
    params=_gc_params,
    check=_gc_check,
    paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond, arXiv 1904.11492",
)
class GlobalContext(nn.Module):
    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, fusion: str = "channel_add"
    ) -> None:
        super().__init__()
        planes = gc_planes(channels, rd_ratio)
        self.fusion = fusion
        self.conv_mask = nn.Conv2d(channels, 1, 1, bias=True)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, planes, 1, bias=True),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, channels, 1, bias=True),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        last = self.transform[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        mask = self.conv_mask(x).reshape(n, h * w, 1).softmax(1)  # (N, HW, 1)
        context = torch.bmm(x.reshape(n, c, h * w), mask).view(n, c, 1, 1)
        t = self.transform(context)
        if self.fusion == "channel_mul":
            return x * torch.sigmoid(t)
        return x + t
