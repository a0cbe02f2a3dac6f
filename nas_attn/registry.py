"""A small registry with explicit string keys (after fvcore.common.registry).

Duplicate names are an error; an unknown name raises a ConfigError that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nas_attn.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, T] = {}

    def register(self, key: str, obj: T) -> T:
        if key in self._items:
            raise KeyError(f"{self.name}: {key!r} is already registered")
        self._items[key] = obj
        return obj

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
