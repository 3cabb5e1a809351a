"""A name -> builder registry, so job specs choose components by name (no if/elif chains)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Builders registered under unique names; lookups of unknown names list the known ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding a builder (class or function) under `name`."""

        def add(builder: T) -> T:
            if name in self._builders:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> T:
        """The builder registered as `name`."""
        if name not in self._builders:
            raise ValueError(f"unknown {self.what} {name!r}; known: {self.names()}")
        return self._builders[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._builders)
