"""The value distributions of the search-space language and their parsing.

Three shapes, each one Optuna distribution:

- :class:`Choice`: a finite list of values (``suggest_categorical``). Each option has an
  *encoded* form Optuna can store (str/int/float/bool/None; lists become ``"a,b"`` strings) and
  the *actual* value the spec receives.
- :class:`IntRange`: ``{low, high, step, log}`` over integers (``suggest_int``); always finite.
- :class:`FloatRange`: ``{low, high, step, log}`` over reals (``suggest_float``); finite only
  with a ``step``.

A distribution with a single value is *fixed*: it is written into every spec and never
suggested, so Optuna's parameter list holds only the real decisions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nas_attn.errors import ConfigError
from nas_attn.hparams import HParam
from nas_attn.objectives import is_finite_number

RANGE_KEYS = ("low", "high", "step", "log")
_MAX_CHECKED = 100_000  # int ranges up to this many values are checked value by value


def encode(value: Any) -> Any:
    """The Optuna-storable form of a choice value (lists become ``"a,b"`` strings)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(encode(v)) for v in value)
    return json.dumps(value, sort_keys=True)


class Dist(Protocol):
    @property
    def size(self) -> float: ...  # an int, or math.inf

    @property
    def is_fixed(self) -> bool: ...

    def fixed(self) -> Any: ...

    def values(self) -> list[Any]: ...  # encoded values, finite distributions only

    def decode(self, encoded: Any, field: str) -> Any: ...

    def suggest(self, trial: Any, name: str) -> Any: ...  # returns the encoded value

    def sample(self, rng: Any) -> Any: ...  # encoded value drawn by a random.Random

    def to_plain(self) -> Any: ...


@dataclass(frozen=True)
class Choice:
    options: tuple[tuple[Any, Any], ...]  # (encoded, actual)

    @classmethod
    def of(cls, values: Sequence[Any]) -> Choice:
        return cls(tuple((encode(v), v) for v in values))

    @property
    def size(self) -> float:
        return len(self.options)

    @property
    def is_fixed(self) -> bool:
        return len(self.options) == 1

    def fixed(self) -> Any:
        return self.options[0][1]

    def actual(self) -> list[Any]:
        return [a for _, a in self.options]

    def values(self) -> list[Any]:
        return [e for e, _ in self.options]

    def decode(self, encoded: Any, field: str) -> Any:
        for e, a in self.options:
            if type(e) is type(encoded) and e == encoded:
                return a
        for e, a in self.options:  # 1 vs 1.0 from a JSON round trip
            if not isinstance(e, bool) and not isinstance(encoded, bool) and e == encoded:
                return a
        raise ConfigError(field, encoded, "not one of the space's choices", self.values())

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.values())

    def sample(self, rng: Any) -> Any:
        return rng.choice(self.values())

    def to_plain(self) -> Any:
        vals = [_plain(a) for a in self.actual()]
        return vals[0] if len(vals) == 1 else vals


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False

    @property
    def size(self) -> float:
        return (self.high - self.low) // self.step + 1

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def fixed(self) -> int:
        return self.low

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def decode(self, encoded: Any, field: str) -> int:
        if (isinstance(encoded, bool) or not isinstance(encoded, int | float)
                or not float(encoded).is_integer()):
            raise ConfigError(field, encoded, "expected an integer", self.describe())
        v = int(encoded)
        if not (self.low <= v <= self.high) or (v - self.low) % self.step:
            raise ConfigError(field, v, "outside the space's range", self.describe())
        return v

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def sample(self, rng: Any) -> int:
        if self.log:
            return min(self.high, int(math.exp(rng.uniform(math.log(self.low),
                                                           math.log(self.high + 1)))))
        return rng.choice(self.values())

    def describe(self) -> str:
        return f"int in [{self.low}, {self.high}] step {self.step}" + (", log" if self.log else "")

    def to_plain(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "step": self.step, "log": self.log}


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @property
    def size(self) -> float:
        if self.low == self.high:
            return 1
        if self.step is None:
            return math.inf
        return round((self.high - self.low) / self.step) + 1

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    def fixed(self) -> float:
        return self.low

    def values(self) -> list[float]:
        if self.size == math.inf:
            raise ValueError("a float range without step has no finite list of values")
        return [self._grid(k) for k in range(int(self.size))]

    def _grid(self, k: int) -> float:
        return min(self.high, self.low + k * self.step) if self.step else self.low

    def decode(self, encoded: Any, field: str) -> float:
        if isinstance(encoded, bool) or not isinstance(encoded, int | float):
            raise ConfigError(field, encoded, "expected a number", self.describe())
        v = float(encoded)
        tol = 1e-9 * max(1.0, abs(self.high))
        if not (self.low - tol <= v <= self.high + tol):
            raise ConfigError(field, v, "outside the space's range", self.describe())
        return v

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def sample(self, rng: Any) -> float:
        if self.step is not None:
            return self._grid(rng.randrange(int(self.size)))
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def describe(self) -> str:
        step = f" step {self.step}" if self.step is not None else ""
        return f"float in [{self.low}, {self.high}]{step}" + (", log" if self.log else "")

    def to_plain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, list | tuple) else v


def _is_number(v: Any) -> bool:
    return is_finite_number(v)


# ---------------------------------------------------------------------------------------------
# parsing a hyperparameter's sub-space against its declaration


def parse_hparam_space(decl: HParam, raw: Any, field: str) -> Choice | IntRange | FloatRange:
    """The sub-space ``raw`` of hyperparameter ``decl``, checked to lie inside its declaration.

    ``raw`` is a fixed value, a list of choices, or (int/float hyperparameters) a range mapping
    ``{low, high, step, log}``. For a ``subset`` hyperparameter a flat list is one fixed subset
    and a list of lists is a choice among subsets.
    """
    if isinstance(raw, Mapping):
        return _parse_range(decl, raw, field)
    if decl.kind == "subset":
        if isinstance(raw, list | tuple) and raw and all(isinstance(x, list | tuple) for x in raw):
            return _choices(decl, list(raw), field)
        return Choice.of([decl.validate(raw, field)])
    if isinstance(raw, list | tuple):
        return _choices(decl, list(raw), field)
    return Choice.of([decl.validate(raw, field)])


def _choices(decl: HParam, raw: list[Any], field: str) -> Choice:
    if not raw:
        raise ConfigError(field, raw, "empty list of choices", decl.describe())
    values = [decl.validate(v, f"{field}[{i}]") for i, v in enumerate(raw)]
    seen: set[str] = set()
    for i, v in enumerate(values):
        key = json.dumps(v, sort_keys=True)
        if key in seen:
            raise ConfigError(f"{field}[{i}]", v, "duplicate choice")
        seen.add(key)
    return Choice.of(values)


def _parse_range(decl: HParam, raw: Mapping[str, Any], field: str) -> IntRange | FloatRange:
    for k in raw:
        if k not in RANGE_KEYS:
            raise ConfigError(f"{field}.{k}", k, "unknown key", RANGE_KEYS)
    if decl.kind not in ("int", "float"):
        raise ConfigError(field, dict(raw),
                          f"a range needs an int or float hyperparameter; {decl.name} is "
                          f"{decl.kind}: give a list of choices", decl.describe())
    for k in ("low", "high"):
        if k not in raw:
            raise ConfigError(f"{field}.{k}", None, "missing (a range needs low and high)")
        if not _is_number(raw[k]):
            raise ConfigError(f"{field}.{k}", raw[k], "expected a number")
    low, high = raw["low"], raw["high"]
    log = raw.get("log", False)
    step = raw.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{field}.log", log, "expected a boolean", [True, False])
    if low > high:
        raise ConfigError(f"{field}.low", low, f"low is above high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{field}.low", low, "a log range needs low > 0")
    if step is not None and (not _is_number(step) or step <= 0):
        raise ConfigError(f"{field}.step", step, "expected a positive number")
    decl.validate(low, f"{field}.low")
    decl.validate(high, f"{field}.high")
    if decl.kind == "int":
        step = 1 if step is None else step
        for k, v in (("low", low), ("high", high), ("step", step)):
            if not float(v).is_integer():
                raise ConfigError(f"{field}.{k}", v, "expected an integer (int hyperparameter)")
        low, high, step = int(low), int(high), int(step)
        if log and step != 1:
            raise ConfigError(f"{field}.step", step, "a log range cannot have a step (Optuna)")
        if (high - low) % step:
            raise ConfigError(f"{field}.high", high, f"high - low is not a multiple of step {step}")
        dist: IntRange | FloatRange = IntRange(low, high, step, log)
        if dist.size <= _MAX_CHECKED:
            for v in dist.values():
                decl.validate(v, f"{field} (value {v})")
        return dist
    low, high = float(low), float(high)
    if step is not None:
        if log:
            raise ConfigError(f"{field}.step", step, "a log range cannot have a step (Optuna)")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ConfigError(f"{field}.high", high, f"high - low is not a multiple of step {step}")
        step = float(step)
    return FloatRange(low, high, step, log)
