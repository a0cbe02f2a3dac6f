"""Declarations of searchable hyperparameters.

Each zoo module declares its hyperparameters next to its class (name, kind, choices or range,
default). The search-space language validates a user's sub-space against these declarations and
the spec validator checks concrete values with :func:`validate_hparams`.

A module declares its hyperparameters under the zoo's shared names (``rd_ratio``, ``rd_divisor``,
``kernel_size``, after timm's layers) and may accept the names of the paper or the reference
code as :class:`Alias` es (CA's ``reduction``, ECA's ``k_size``): an alias is resolved to the
shared name, its value converted, wherever a spec, a search space or a study names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def reciprocal(value: Any) -> float:
    """``1 / value`` for a positive number: a reduction ``r`` as the fraction ``rd_ratio``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("expected a positive number")
    return 1 / value


def integer_reciprocal(value: Any) -> int | None:
    """``r`` with ``1 / r == value`` when ``r`` is a whole number, else None."""
    r = 1 / value
    return round(r) if abs(r - round(r)) <= 1e-9 * r else None


@dataclass(frozen=True)
class Alias:
    """Another name accepted for the hyperparameter ``target`` (the paper's or the code's).

    - ``convert`` maps a value given under the alias to the shared hyperparameter's units
      (``reciprocal``: CA's ``reduction=32`` is ``rd_ratio=1/32``); None keeps the value.
    - ``hashed``: the name spec hashes were first computed with, before the shared name
      existed. :func:`nas_attn.arch.spec_hash` writes the value back under this name (through
      ``invert``, None when it has no such form), so the hashes of existing runs, bundles and
      tables stay what they were.
    """

    name: str
    target: str
    convert: Callable[[Any], Any] | None = None
    invert: Callable[[Any], Any] | None = None
    hashed: bool = False
    doc: str = ""

    def to_target(self, value: Any, decl: HParam, field: str) -> Any:
        """``value`` in the units of ``decl`` (validated), or ConfigError naming ``field``."""
        if self.convert is None:
            return decl.validate(value, field)
        try:
            converted = self.convert(value)
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise ConfigError(field, value, f"{e} ({self.name} is an alias of {decl.name}: "
                              f"{self.doc})", decl.describe()) from None
        try:
            return decl.validate(converted, field)
        except ConfigError as e:
            raise ConfigError(field, value, f"{self.name}={value!r} is {decl.name}="
                              f"{converted!r}: {e.reason}", e.choices) from None


def _inverted(alias: Alias, value: Any, sub_spaces: bool) -> Any:
    if alias.invert is None:
        return value
    if sub_spaces and isinstance(value, Mapping):
        return None
    if sub_spaces and isinstance(value, list):
        out = [alias.invert(v) for v in value]
        return None if any(v is None for v in out) else out
    return alias.invert(value)


@dataclass(frozen=True)
class HParamSet:
    """The ordered hyperparameter declarations of one module, and the aliases it accepts."""

    params: tuple[HParam, ...] = field(default_factory=tuple)
    aliases: tuple[Alias, ...] = ()

    def __post_init__(self) -> None:
        names = self.names()
        for a in self.aliases:
            if a.target not in names:
                raise ValueError(f"alias {a.name}: no hyperparameter {a.target!r}")
            if a.name in names:
                raise ValueError(f"alias {a.name}: already a hyperparameter name")
        if len({a.name for a in self.aliases}) != len(self.aliases):
            raise ValueError("duplicate alias names")

    def __iter__(self):
        return iter(self.params)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def accepted(self) -> list[str]:
        """The declared names, then every alias as ``alias (= target)``."""
        return self.names() + [f"{a.name} (= {a.target})" for a in self.aliases]

    def get(self, name: str, field: str) -> HParam:
        for p in self.params:
            if p.name == name:
                return p
        alias = self.alias(name)
        if alias is not None:
            raise ConfigError(field, name, f"an alias of {alias.target}; name it {alias.target} "
                              "here", self.names())
        raise ConfigError(field, name, "unknown hyperparameter", self.accepted() or "(none)")

    def alias(self, name: str) -> Alias | None:
        return next((a for a in self.aliases if a.name == name), None)

    def resolve(self, name: str, field: str) -> tuple[HParam, Alias | None]:
        """The declaration ``name`` refers to, and the alias used (None for the shared name)."""
        alias = self.alias(name)
        if alias is not None:
            return self.get(alias.target, field), alias
        for p in self.params:
            if p.name == name:
                return p, None
        raise ConfigError(field, name, "unknown hyperparameter", self.accepted() or "(none)")

    def shared_names(self, values: Mapping[str, Any], field: str,
                     convert: Callable[[Alias, HParam, Any, str], Any] | None = None
                     ) -> dict[str, Any]:
        """``values`` with every alias renamed to its target and its value converted (by
        ``convert(alias, decl, value, field)``, default :meth:`Alias.to_target`). Naming one
        hyperparameter twice (by its name and an alias) is a ConfigError."""
        out: dict[str, Any] = {}
        given: dict[str, str] = {}
        for name, value in values.items():
            f = f"{field}.{name}"
            decl, alias = self.resolve(name, f)
            if decl.name in given:
                raise ConfigError(f, value, f"{decl.name} is already given as "
                                  f"{given[decl.name]!r}; give one of them")
            given[decl.name] = name
            if alias is None:
                out[decl.name] = value
            elif convert is None:
                out[decl.name] = alias.to_target(value, decl, f)
            else:
                out[decl.name] = convert(alias, decl, value, f)
        return out

    def hash_form(self, values: Mapping[str, Any], *, sub_spaces: bool = False
                  ) -> dict[str, Any]:
        """Canonical ``values`` with each ``hashed`` alias's target written back under the
        alias (through ``invert``): the form spec hashes (and, with ``sub_spaces``, search-space
        hashes of plain sub-spaces: a value or a list of choices) were first computed on. A
        value without such a form (a range, a ratio that is not 1/r) keeps the shared name."""
        out = dict(values)
        for a in self.aliases:
            if a.hashed and a.target in out:
                v = _inverted(a, out[a.target], sub_spaces)
                if v is not None:
                    del out[a.target]
                    out[a.name] = v
        return out

    def defaults(self) -> dict[str, Any]:
        return {p.name: _copy(p.default) for p in self.params}


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list | tuple) else v


def validate_hparams(
    decls: HParamSet | Sequence[HParam], values: Mapping[str, Any], field: str
) -> dict[str, Any]:
    """Validate ``values`` against ``decls`` and return them under the shared names, with
    defaults filled in.

    Aliases are accepted (and converted); unknown names raise ConfigError listing the declared
    ones; no value is silently dropped.
    """
    decls = decls if isinstance(decls, HParamSet) else HParamSet(tuple(decls))
    out = decls.defaults()
    for name, value in decls.shared_names(values, field).items():
        decl = decls.get(name, f"{field}.{name}")
        out[name] = decl.validate(value, f"{field}.{name}")
    return out
