"""A small registry with explicit string keys (after fvcore.common.registry).

Duplicate names are an error that names both origins (the file that registered the name first
and the one that tried again); an unknown name raises a ConfigError that lists the known ones.
Every registry is listed by :func:`all_registries`, so the plugin loader can tell what a plugin
registered without knowing the registries by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from nas_attn.errors import ConfigError

T = TypeVar("T")


class DuplicateNameError(ConfigError, KeyError):
    """A name registered twice; ``field`` names the registry and the name."""

    __str__ = Exception.__str__  # KeyError would quote the message


def origin_of(obj: object) -> str:
    """Where ``obj`` (or the class/function it wraps as ``cls``/``build``) was defined: its
    source file, else its module, else ``?``."""
    for target in (obj, getattr(obj, "cls", None), getattr(obj, "build", None)):
        if target is None or not (inspect.isclass(target) or inspect.isfunction(target)):
            continue
        try:
            path = inspect.getsourcefile(target)  # type: ignore[arg-type]
        except TypeError:
            path = None
        return path or str(getattr(target, "__module__", "?"))
    return "?"


class Registry(Generic[T]):
    _instances: ClassVar[list[Registry[Any]]] = []

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        Registry._instances.append(self)

    def register(self, key: str, obj: T, origin: str | None = None) -> T:
        origin = origin or origin_of(obj)
        if key in self._items:
            raise DuplicateNameError(
                f"{self.name} {key!r}", None, f"already registered by {self._origins[key]}; "
                f"registered again by {origin}")
        self._items[key] = obj
        self._origins[key] = origin
        return obj

    def unregister(self, key: str) -> None:
        """Remove ``key`` (a plugin unloaded, a test cleaning up); unknown keys are ignored."""
        self._items.pop(key, None)
        self._origins.pop(key, None)

    def origin(self, key: str) -> str:
        """The file (or module) that registered ``key``."""
        self.get(key)
        return self._origins[key]

    def decorator(self, key: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            return self.register(key, obj)

        return wrap

    def get(self, key: str, field: str | None = None) -> T:
        try:
            return self._items[key]
        except (KeyError, TypeError):
            raise ConfigError(
                field or self.name, key, f"unknown {self.name}", sorted(self._items)
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())


def all_registries() -> list[Registry[Any]]:
    """Every registry created in this process (the zoo, backbones, datasets, ...)."""
    return list(Registry._instances)
