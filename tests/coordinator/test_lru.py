"""The bounded map workers keep decoded tables in between jobs."""

from __future__ import annotations

from xpcompute.coordinator.lru import LRU


def test_reading_refreshes_and_adding_drops_the_least_recent() -> None:
    cache: LRU[str, int | None] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("n", None)  # a remembered "nothing here" is still an entry
    assert "n" in cache and cache.get("n") is None and "a" not in cache
