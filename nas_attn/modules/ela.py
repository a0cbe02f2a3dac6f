"""Efficient Local Attention (Xu & Wan, 2024, arXiv 2403.01123).

Follows the authors' ``ELA`` (Xuwei86/ELA_Code): z_h = mean over W (N,C,H), z_w = mean over H
(N,C,W); one shared ``Conv1d(C, C, k, padding=k//2, groups=g, bias=False)`` and one shared
``GroupNorm(G, C)`` applied to each direction (statistics per call); a_h = sigmoid(GN(conv(z_h))),
a_w = sigmoid(GN(conv(z_w))); out = x * a_h * a_w. No channel reduction, no BN.

Versions (k, g, G): ELA-T (5, C, 32), ELA-B (7, C, 16), ELA-S (5, C/8, 16), ELA-L (7, C/8, 16).
Params C*(C/g)*k + 2C: T 7C, B 9C, S 42C, L 58C. C must be divisible by G (ELA-T cannot be built
at C=144, a MobileNetV2 width) and, for S/L, by 8; ``check`` says which. Paper guidance: T/B for
light networks, B/S for deeper ones, L for large ones (the authors' MobileNetV2 uses L at
``mid``). Default here: B. Deliberate deviations: none.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam
from nas_attn.modules._registry import register_module

# version -> (kernel k, conv groups divisor: g = C // divisor, GroupNorm groups G)
ELA_VERSIONS: dict[str, tuple[int, int, int]] = {
    "T": (5, 1, 32),
    "B": (7, 1, 16),
    "S": (5, 8, 16),
    "L": (7, 8, 16),
}

VERSION = HParam(
    "version", "categorical", default="B", choices=tuple(ELA_VERSIONS),
    doc="ELA-T/B/S/L: (kernel, conv groups, GroupNorm groups) = (5,C,32) (7,C,16) (5,C/8,16) "
    "(7,C/8,16)",
)


def _ela_check(channels: int, version: str = "B") -> str | None:
    _, per_group, gn_groups = ELA_VERSIONS[version]
    reasons = []
    if channels % gn_groups:
        reasons.append(f"channels divisible by its {gn_groups} GroupNorm groups")
    if per_group > 1 and channels % per_group:
        reasons.append(f"channels divisible by {per_group} (conv groups = C/{per_group})")
    if reasons:
        return f"ELA-{version} needs " + " and ".join(reasons) + f"; got {channels}"
    return None


def _ela_params(channels: int, version: str = "B") -> int:
    k, per_group, _ = ELA_VERSIONS[version]
    return channels * per_group * k + 2 * channels


@register_module(
    "ela",
    kind="gate",
    hparams=(VERSION,),
    params=_ela_params,
    check=_ela_check,
    paper="ELA: Efficient Local Attention for Deep CNNs, arXiv 2403.01123",
    variants={f"ELA-{v}": {"version": v} for v in ELA_VERSIONS},
)
class EfficientLocalAttention(nn.Module):
    def __init__(self, channels: int, version: str = "B") -> None:
        super().__init__()
        reason = _ela_check(channels, version)
        if reason:
            raise ConfigError("channels", channels, reason)
        k, per_group, gn_groups = ELA_VERSIONS[version]
        self.conv = nn.Conv1d(
            channels, channels, k, padding=k // 2, groups=channels // per_group, bias=False
        )
        self.gn = nn.GroupNorm(gn_groups, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_h = self.gate(self.gn(self.conv(x.mean(3))))  # (N, C, H)
        a_w = self.gate(self.gn(self.conv(x.mean(2))))  # (N, C, W)
        return a_h[:, :, :, None] * a_w[:, :, None, :] * x
