"""A small least-recently-used map for what a warm worker keeps between jobs.

Workers keep decoded tables (the analysis table's columns, cubes, compressed
slices) for the next job in the same process. Everything kept this way is
immutable at its key (a published run, or an object written put-if-absent), so
the only question is how much to keep.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``entries`` values; reading one makes it the most recent, adding one drops the least recent."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: dict[K, V] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        if key not in self._items:
            return None
        value = self._items.pop(key)
        self._items[key] = value
        return value

    def put(self, key: K, value: V) -> V:
        self._items.pop(key, None)
        while len(self._items) >= self.entries:
            self._items.pop(next(iter(self._items)))
        self._items[key] = value
        return value

    def clear(self) -> None:
        self._items.clear()
