"""Cost constraints of a search space: ``max_flops`` / ``max_params``, for the whole network and
per stage.

Semantics (measured with :func:`nas_attn.cost.profile`, whose FLOP convention applies):

- whole network: the spec's total FLOPs / parameters.
- per stage ``i``: what stage ``i``'s choices *add*: the spec's total minus the total of the same
  spec with stage ``i`` made plain (no attention, standard conv, no fusion). So the attention
  modules, the conv replacement's extra cost and the fusion module of that stage all count, and
  nothing else does. A plain stage adds 0 and always passes.

Limits are numbers or strings with a decimal suffix: ``50M`` = 50e6, ``1.5G``, ``20K``, ``5e7``.

``max_latency_ms`` (whole network only, milliseconds) is a latency budget: it needs a latency
table, so it is checked by a study that names one (``latency: {table: FILE}``, see
:class:`nas_attn.search.study.LatencySettings`) with the table's prediction
(:func:`latency_violation`), not by :meth:`Constraints.check`, which has no table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.objectives import is_finite_number

LIMIT_KEYS = ("max_flops", "max_params")
LATENCY_KEY = "max_latency_ms"
CONSTRAINT_KEYS = (*LIMIT_KEYS, LATENCY_KEY, "stages")
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
        fmt = ",.4g" if self.metric == "latency_ms" else ",.0f"
        return (f"{self.where}: {self.metric}{added} {self.value:{fmt}} > max "
                f"{self.limit:{fmt}}")

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "metric": self.metric, "value": self.value,
                "limit": self.limit}


@dataclass(frozen=True)
class Constraints:
    network: Limits = field(default_factory=Limits)
    stages: tuple[Limits, ...] = ()  # one per stage once resolved (empty: no stage limits)
    max_latency_ms: float | None = None  # checked with a latency table (latency_violation)

    @property
    def empty(self) -> bool:
        """No FLOPs or parameter limit (what :meth:`check` measures; a latency budget aside)."""
        return self.network.empty and all(s.empty for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        stages = [s.to_dict() for s in self.stages] if any(not s.empty for s in self.stages) else []
        latency = {} if self.max_latency_ms is None else {LATENCY_KEY: self.max_latency_ms}
        return {**self.network.to_dict(), **latency, "stages": stages}

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


def latency_violation(constraints: Constraints, latency_ms: float) -> Violation | None:
    """The latency budget's violation for a network predicted at ``latency_ms``, if any."""
    limit = constraints.max_latency_ms
    if limit is None or latency_ms <= limit:
        return None
    return Violation("network", "latency_ms", float(latency_ms), limit)


def parse_latency_budget(value: Any, field: str) -> float | None:
    """``max_latency_ms``: a positive, finite number of milliseconds (no suffixes), or null."""
    if value is None:
        return None
    if not is_finite_number(value) or value <= 0:
        raise ConfigError(field, value, "expected a positive number of milliseconds", [1.5, 20])
    return float(value)
