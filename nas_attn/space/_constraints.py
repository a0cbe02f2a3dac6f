"""Cost constraints of a search space: ``max_flops`` / ``max_params``, for the whole network and
per stage.

Semantics (measured with :func:`nas_attn.cost.profile`, whose FLOP convention applies):

- whole network: the spec's total FLOPs / parameters.
- per stage ``i``: what stage ``i``'s choices *add*: the spec's total minus the total of the same
  spec with stage ``i`` made plain (no attention, standard conv, no fusion). So the attention
  modules, the conv replacement's extra cost and the fusion module of that stage all count, and
  nothing else does. A plain stage adds 0 and always passes.

Limits are numbers or strings with a decimal suffix: ``50M`` = 50e6, ``1.5G``, ``20K``, ``5e7``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import is_finite_number

LIMIT_KEYS = ("max_flops", "max_params")
CONSTRAINT_KEYS = (*LIMIT_KEYS, "stages")
_SUFFIX = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_amount(value: Any, field: str) -> float:
    """A positive count from a number or a string such as ``"50M"``, ``"1.5G"`` or ``"5e7"``."""
    v: Any = value
    if isinstance(value, str):
        s = value.strip().replace("_", "")
        scale = _SUFFIX.get(s[-1:].upper(), 1.0) if s else 1.0
        if scale != 1.0:
            s = s[:-1]
        try:
            v = float(s) * scale
        except ValueError:
            raise ConfigError(field, value, "expected a number, optionally with K, M, G or T",
                              ["50M", "1.5G", "20K", 5e7]) from None
    if not is_finite_number(v) or v <= 0:
        raise ConfigError(field, value, "expected a positive number")
    return float(v)


@dataclass(frozen=True)
class Limits:
    max_flops: float | None = None
    max_params: float | None = None

    @classmethod
    def parse(cls, raw: Any, field: str) -> Limits:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(field, raw, "expected a mapping with keys", LIMIT_KEYS)
        for k in raw:
            if k not in LIMIT_KEYS:
                raise ConfigError(f"{field}.{k}", k, "unknown key", LIMIT_KEYS)
        return cls(**{k: None if raw[k] is None else parse_amount(raw[k], f"{field}.{k}")
                      for k in raw})

    @property
    def empty(self) -> bool:
        return self.max_flops is None and self.max_params is None

    def to_dict(self) -> dict[str, float | None]:
        return {"max_flops": self.max_flops, "max_params": self.max_params}


@dataclass(frozen=True)
class Violation:
    """One violated constraint: ``where`` is ``"network"`` or ``"stage{i}"``."""

    where: str
    metric: str  # "flops" or "params"
    value: float
    limit: float

    def __str__(self) -> str:
        added = "" if self.where == "network" else " added"
        return f"{self.where}: {self.metric}{added} {self.value:,.0f} > max {self.limit:,.0f}"

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "metric": self.metric, "value": self.value,
                "limit": self.limit}


@dataclass(frozen=True)
class Constraints:
    network: Limits = field(default_factory=Limits)
    stages: tuple[Limits, ...] = ()  # one per stage once resolved (empty: no stage limits)

    @property
    def empty(self) -> bool:
        return self.network.empty and all(s.empty for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        stages = [s.to_dict() for s in self.stages] if any(not s.empty for s in self.stages) else []
        return {**self.network.to_dict(), "stages": stages}

    def check(self, spec: Any, input_size: tuple[int, int, int]) -> list[Violation]:
        if self.empty:
            return []
        from nas_attn.arch import StageSpec, canonicalize
        from nas_attn.cost import profile

        canon = canonicalize(spec)
        total = profile(canon, input_size=tuple(input_size))
        out = _over("network", self.network, total.flops, total.params)
        for i, lim in enumerate(self.stages):
            if lim.empty or i >= len(canon.stages) or canon.stages[i].is_plain:
                continue
            stages = list(canon.stages)
            stages[i] = StageSpec()
            base = profile(replace(canon, stages=tuple(stages)), input_size=tuple(input_size))
            out += _over(f"stage{i}", lim, total.flops - base.flops, total.params - base.params)
        return out


def _over(where: str, lim: Limits, flops: float, params: float) -> list[Violation]:
    out = []
    if lim.max_flops is not None and flops > lim.max_flops:
        out.append(Violation(where, "flops", float(flops), lim.max_flops))
    if lim.max_params is not None and params > lim.max_params:
        out.append(Violation(where, "params", float(params), lim.max_params))
    return out
