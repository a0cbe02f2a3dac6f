"""Declarations of searchable hyperparameters.

Each zoo module declares its hyperparameters next to its class (name, kind, choices or range,
default). The search-space language validates a user's sub-space against these declarations and
the spec validator checks concrete values with :func:`validate_hparams`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nas_attn.errors import ConfigError
from nas_attn.objectives import is_finite_number

HParamKind = Literal["int", "float", "categorical", "subset", "bool"]


@dataclass(frozen=True)
class HParam:
    """One searchable hyperparameter of a module.

    kinds:
      - ``int`` / ``float``: a value in [low, high]; ``log`` marks a log-scaled range. ``multiple_of``
        (int only) restricts to multiples (e.g. odd kernel sizes use ``odd=True``).
      - ``categorical``: one of ``choices`` (strings or numbers).
      - ``subset``: a non-empty subset (at least ``min_size``) of ``choices``; stored as a list in
        the order of ``choices``.
      - ``bool``: True or False.
    """

    name: str
    kind: HParamKind
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    odd: bool = False
    min_size: int = 1
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind in ("int", "float") and (self.low is None or self.high is None):
            raise ValueError(f"HParam {self.name}: {self.kind} needs low and high")
        if self.kind in ("categorical", "subset") and not self.choices:
            raise ValueError(f"HParam {self.name}: {self.kind} needs choices")
        # the default must itself be valid
        self.validate(self.default, f"<default of {self.name}>")

    def describe(self) -> str:
        if self.kind in ("int", "float"):
            scale = ", log" if self.log else ""
            odd = ", odd" if self.odd else ""
            return f"{self.kind} in [{self.low}, {self.high}]{scale}{odd}"
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices or ())
        if self.kind == "subset":
            return f"a subset (at least {self.min_size}) of " + ", ".join(
                repr(c) for c in self.choices or ()
            )
        return "true or false"

    def validate(self, value: Any, field: str) -> Any:
        """Return the normalised value or raise ConfigError naming ``field``."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(field, value, "expected a boolean", [True, False])
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not value.is_integer()
            ):
                raise ConfigError(field, value, "expected an integer", self.describe())
            value = int(value)
            if not (self.low <= value <= self.high) or (self.odd and value % 2 == 0):
                raise ConfigError(field, value, "out of range", self.describe())
            return value
        if self.kind == "float":
            if not is_finite_number(value):
                raise ConfigError(field, value, "expected a number", self.describe())
            value = float(value)
            if not (self.low <= value <= self.high):
                raise ConfigError(field, value, "out of range", self.describe())
            return value
        if self.kind == "categorical":
            for c in self.choices or ():
                if _same(value, c):
                    return c
            raise ConfigError(field, value, "not a valid choice", self.choices)
        # subset
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigError(field, value, "expected a list", self.choices)
        items = list(value)
        for v in items:
            if not any(_same(v, c) for c in self.choices or ()):
                raise ConfigError(field, v, "not a valid member", self.choices)
        if len(set(map(str, items))) != len(items):
            raise ConfigError(field, items, "duplicate members", self.choices)
        if len(items) < self.min_size:
            raise ConfigError(field, items, f"needs at least {self.min_size} member(s)", self.choices)
        return [c for c in self.choices or () if any(_same(v, c) for v in items)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@dataclass(frozen=True)
class HParamSet:
    """The ordered hyperparameter declarations of one module."""

    params: tuple[HParam, ...] = field(default_factory=tuple)

    def __iter__(self):
        return iter(self.params)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str, field: str) -> HParam:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(field, name, "unknown hyperparameter", self.names() or "(none)")

    def defaults(self) -> dict[str, Any]:
        return {p.name: _copy(p.default) for p in self.params}


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list | tuple) else v


def validate_hparams(
    decls: HParamSet | Sequence[HParam], values: Mapping[str, Any], field: str
) -> dict[str, Any]:
    """Validate ``values`` against ``decls`` and return them with defaults filled in.

    Unknown names raise ConfigError listing the declared ones; no value is silently dropped.
    """
    decls = decls if isinstance(decls, HParamSet) else HParamSet(tuple(decls))
    out = decls.defaults()
    for name, value in values.items():
        decl = decls.get(name, f"{field}.{name}")
        out[name] = decl.validate(value, f"{field}.{name}")
    return out
