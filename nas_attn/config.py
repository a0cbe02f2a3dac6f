"""Strict, frozen configuration dataclasses, shared by every layer that reads a config.

A config is a frozen dataclass validated in ``__post_init__``; :func:`config_from_mapping` builds
one from a plain mapping (YAML, CLI) and refuses unknown keys with a ConfigError that lists the
valid ones, so a misspelt setting never silently does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from nas_attn.errors import ConfigError
from nas_attn.objectives import is_finite_number

C = TypeVar("C")


def config_from_mapping(cls: type[C], value: C | Mapping[str, Any] | None, field: str) -> C:
    """``value`` as a ``cls`` instance: returned as is, or built from a mapping (None = defaults).

    Unknown keys raise ConfigError naming ``field.key``; the dataclass validates the values.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, f"expected a mapping or a {cls.__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in value:
        if key not in names:
            raise ConfigError(f"{field}.{key}" if field else str(key), key, "unknown key", names)
    return cls(**dict(value))


def check_int(value: Any, field: str, low: int | None = None, high: int | None = None,
              none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, value, "expected an integer" + (" or null" if none_ok else ""))
    if low is not None and value < low:
        raise ConfigError(field, value, f"must be >= {low}")
    if high is not None and value > high:
        raise ConfigError(field, value, f"must be <= {high}")


def check_float(value: Any, field: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if not is_finite_number(value):
        raise ConfigError(field, value, "expected a finite number"
                          + (" or null" if none_ok else ""))
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(field, value, f"must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise ConfigError(field, value, f"must be <= {high}")


def check_bool(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(field, value, "expected a boolean", [True, False])


def check_choice(value: Any, field: str, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(field, value, "unknown value", choices)


def parse_seeds(value: Any, field: str = "seeds", first: int = 0) -> tuple[int, ...]:
    """What ``--seeds`` means in every command: ``K`` -> K seeds counting from ``first`` (the
    command's base seed: 0 for an ablation, the study's seed for an export); a list (or
    ``"0,3,7"``) -> exactly those seeds, distinct, >= 0."""
    if isinstance(value, str):
        try:
            value = [int(s) for s in value.split(",")] if "," in value else int(value)
        except ValueError:
            raise ConfigError(field, value, "expected a count K or a list of seeds") from None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(field, value, "need at least one seed (2+ for any statistics)")
        return tuple(range(first, first + value))
    if (isinstance(value, Sequence) and value
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        if len(set(value)) != len(value):
            raise ConfigError(field, list(value), "duplicate seed")
        return tuple(int(s) for s in value)
    raise ConfigError(field, value, "expected a count K or a non-empty list of seeds >= 0")
