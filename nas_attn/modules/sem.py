"""SEM, Switchable Self-attention Module (Zhong, Wen and Qin, 2022, arXiv 2209.05680).

Follows the authors' code, Qrange-group/SEM ``models/sem.py`` (``Bottleneck``): with u = GAP(x),
switch weights s = sigmoid(Linear(C -> n, bias)(u)) (independent sigmoids, no softmax); each
candidate operator i gives C logits o_i; a = prod_i sigmoid(s_i * o_i); out = x * a. With
s_i -> 0 operator i becomes a constant 0.5 gate: that is the switch.

The authors' three operators (the default set, 906 parameters at C=64):

- ``se``: Linear(C -> h, bias) -> ReLU -> Linear(h -> C, bias) on u, h = round(C / 16)
  (the code's ``round(planes / 4)`` with C = 4 * planes);
- ``eca``: Conv1d(1, 1, k, padding=k//2, no bias) across the channels of u, k from ECA's formula;
- ``affine``: w * u + b per channel, w initialised to 0 and b to -1.

The ``operators`` hyperparameter chooses any non-empty subset of the candidates: the paper's
"switchable selection among operators" as a search option. Two extra candidates are channel-logit
operators taken from elsewhere in the zoo, used exactly as their papers produce channel logits:

- ``cbam``: CBAM's channel gate (arXiv 1807.06521), one shared MLP (as ``se``) applied to the
  global average and the global max, logits summed;
- ``cra``: CRA (arXiv 2010.05605), AdaptiveAvgPool2d(7) then a depthwise 7x7 conv with bias.

Deviation: h is at least 1 (``round(C/16)`` is 0 for C < 8, which the authors never use).
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam
from nas_attn.modules._common import eca_kernel_size
from nas_attn.modules._registry import register_module

OPERATOR_CHOICES = ("se", "eca", "affine", "cbam", "cra")
DEFAULT_OPERATORS = ("se", "eca", "affine")
CRA_SIZE = 7

OPERATORS = HParam(
    "operators", "subset", default=list(DEFAULT_OPERATORS), choices=OPERATOR_CHOICES,
    doc="the candidate excitation operators the switches select among (SEM: se, eca, affine)",
)


def _hidden(channels: int) -> int:
    return max(1, round(channels / 16))


def _operator_params(name: str, channels: int) -> int:
    h = _hidden(channels)
    if name in ("se", "cbam"):
        return 2 * channels * h + h + channels
    if name == "eca":
        return eca_kernel_size(channels)
    if name == "affine":
        return 2 * channels
    if name == "cra":
        return channels * CRA_SIZE * CRA_SIZE + channels
    raise ConfigError("operators", name, "unknown SEM operator", OPERATOR_CHOICES)


def _sem_params(channels: int, operators: list[str] | tuple[str, ...] = DEFAULT_OPERATORS) -> int:
    n = len(operators)
    return channels * n + n + sum(_operator_params(op, channels) for op in operators)


class _MLP(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        h = _hidden(channels)
        self.fc1 = nn.Linear(channels, h)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(h, channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(v)))


class _SEOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = _MLP(channels)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(u)


class _ECAOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        k = eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.conv(u.unsqueeze(1)).squeeze(1)


class _AffineOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.full((channels,), -1.0))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u * self.weight + self.bias


class _CBAMChannelOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = _MLP(channels)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(u) + self.mlp(x.amax(dim=(2, 3)))


class _CRAOp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(CRA_SIZE)
        self.conv = nn.Conv2d(channels, channels, CRA_SIZE, groups=channels, bias=True)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x)).flatten(1)


_OPERATOR_CLASSES: dict[str, type[nn.Module]] = {
    "se": _SEOp,
    "eca": _ECAOp,
    "affine": _AffineOp,
    "cbam": _CBAMChannelOp,
    "cra": _CRAOp,
}


@register_module(
    "sem",
    kind="gate",
    hparams=(OPERATORS,),
    params=_sem_params,
    paper="Switchable Self-attention Module (SEM), arXiv 2209.05680",
)
class SwitchableExcitation(nn.Module):
    def __init__(
        self, channels: int, operators: list[str] | tuple[str, ...] = DEFAULT_OPERATORS
    ) -> None:
        super().__init__()
        operators = list(operators)
        if not operators:
            raise ConfigError(
                "operators", operators, "needs at least one operator", OPERATOR_CHOICES
            )
        for op in operators:
            if op not in _OPERATOR_CLASSES:
                raise ConfigError("operators", op, "unknown SEM operator", OPERATOR_CHOICES)
        self.operators = operators
        self.switch = nn.Linear(channels, len(operators))
        self.ops = nn.ModuleDict({op: _OPERATOR_CLASSES[op](channels) for op in operators})

    def switch_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, n_operators) switch weights s = sigmoid(Linear(GAP(x)))."""
        return torch.sigmoid(self.switch(x.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.switch(u))
        gate = None
        for i, op in enumerate(self.operators):
            a = torch.sigmoid(s[:, i : i + 1] * self.ops[op](x, u))
            gate = a if gate is None else gate * a
        return x * gate[:, :, None, None]
