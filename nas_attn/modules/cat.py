"""CAT, collaborative channel and spatial attention (Wu et al., IET Computer Vision 2023,
arXiv 2212.06335).

No code was released ("code will be released soon"; none has been), so this is a
reconstruction from the paper's description, not a reproduction:

- three poolings: global average (GAP), global max (GMP) and global entropy pooling (GEP);
  GEP of a map is the entropy of its softmax, -sum p log p with p = softmax(x) over the pooled
  positions (computed with ``log_softmax``, so it is finite for any input);
- channel branch: logits = sum_i a_i * MLP(pool_i(x)) over the chosen poolings, one shared MLP
  Conv1x1(C -> h, bias) -> ReLU -> Conv1x1(h -> C, bias), h = C * rd_ratio (CBAM's MLP);
- spatial branch: per-position mean, max and entropy over the channels (the same chosen
  poolings), stacked -> Conv2d(n, 1, 7, padding=3, no bias) -> BatchNorm2d(1) -> logits
  (CBAM's spatial gate with the extra entropy map);
- fusion ``parallel``: out = l_c * x * sigmoid(channel(x)) + l_s * x * sigmoid(spatial(x));
  ``sequential``: x1 = x * sigmoid(channel(x)); out = x1 * sigmoid(spatial(x1)) (CBAM's order),
  which has no l_c, l_s (they would be unused parameters).

The colla-factors a_i, l_c, l_s are learnable scalars, all initialised to 1 (our choice: the
paper gives no init; 1 makes the channel branch CBAM's sum of pooled MLP outputs). Which
poolings and which fusion are hyperparameters, the paper's own ablations.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam
from nas_attn.modules._common import RD_DIVISOR, RD_RATIO, reduced_channels
from nas_attn.modules._registry import register_module

POOLING_CHOICES = ("avg", "max", "entropy")
FUSION_CHOICES = ("parallel", "sequential")
SPATIAL_KERNEL = 7

POOLING = HParam(
    "pooling", "subset", default=list(POOLING_CHOICES), choices=POOLING_CHOICES,
    doc="the poolings of both branches: average, max, entropy (GEP)",
)
FUSION = HParam(
    "fusion", "categorical", default="parallel", choices=FUSION_CHOICES,
    doc="parallel: weighted sum of the two gated maps; sequential: channel then spatial",
)


def entropy_pool(
    x: torch.Tensor, dim: int | tuple[int, ...], keepdim: bool = False
) -> torch.Tensor:
    """Entropy of softmax(x) over ``dim``: -sum p log p (GEP when ``dim`` is the spatial axes)."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    shape = x.shape
    moved = x.movedim(dims, tuple(range(-len(dims), 0))).flatten(-len(dims))
    log_p = moved.log_softmax(dim=-1)
    h = -(log_p.exp() * log_p).sum(dim=-1)
    if keepdim:
        h = h.view([1 if i in {d % len(shape) for d in dims} else s for i, s in enumerate(shape)])
    return h


def _pool(x: torch.Tensor, kind: str, dim: tuple[int, ...]) -> torch.Tensor:
    if kind == "avg":
        return x.mean(dim=dim, keepdim=True)
    if kind == "max":
        return x.amax(dim=dim, keepdim=True)
    return entropy_pool(x, dim, keepdim=True)


def _cat_params(
    channels: int,
    pooling: list[str] | tuple[str, ...] = POOLING_CHOICES,
    fusion: str = "parallel",
    rd_ratio: float = 1 / 16,
    rd_divisor: int = 1,
) -> int:
    h = reduced_channels(channels, rd_ratio, rd_divisor)
    n = len(pooling)
    mlp = 2 * channels * h + h + channels
    spatial = n * SPATIAL_KERNEL**2 + 2
    return mlp + n + spatial + (2 if fusion == "parallel" else 0)


@register_module(
    "cat",
    kind="gate",
    hparams=(POOLING, FUSION, RD_RATIO, RD_DIVISOR),
    params=_cat_params,
    paper="CAT: Learning to Collaborate Channel and Spatial Attention from Multi-Information "
    "Fusion, arXiv 2212.06335 (reconstruction: no code released)",
)
class CollaborativeAttention(nn.Module):
    def __init__(
        self,
        channels: int,
        pooling: list[str] | tuple[str, ...] = POOLING_CHOICES,
        fusion: str = "parallel",
        rd_ratio: float = 1 / 16,
        rd_divisor: int = 1,
    ) -> None:
        super().__init__()
        pooling = list(pooling)
        if not pooling or any(p not in POOLING_CHOICES for p in pooling):
            raise ConfigError("pooling", pooling, "a non-empty subset is needed", POOLING_CHOICES)
        if fusion not in FUSION_CHOICES:
            raise ConfigError("fusion", fusion, "unknown fusion", FUSION_CHOICES)
        self.pooling = pooling
        self.fusion = fusion
        h = reduced_channels(channels, rd_ratio, rd_divisor)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, h, 1), nn.ReLU(inplace=True), nn.Conv2d(h, channels, 1)
        )
        self.pool_factors = nn.Parameter(torch.ones(len(pooling)))
        self.spatial = nn.Sequential(
            nn.Conv2d(len(pooling), 1, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2, bias=False),
            nn.BatchNorm2d(1),
        )
        if fusion == "parallel":
            self.branch_factors = nn.Parameter(torch.ones(2))

    def channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for i, kind in enumerate(self.pooling):
            out = out + self.pool_factors[i] * self.mlp(_pool(x, kind, (2, 3)))
        return out

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(torch.cat([_pool(x, kind, (1,)) for kind in self.pooling], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "sequential":
            x1 = x * torch.sigmoid(self.channel_logits(x))
            return x1 * torch.sigmoid(self.spatial_logits(x1))
        l_c, l_s = self.branch_factors
        return (
            l_c * x * torch.sigmoid(self.channel_logits(x))
            + l_s * x * torch.sigmoid(self.spatial_logits(x))
        )
