"""The query's cache answers only for exactly the rows (and revisions) it was made from."""

from __future__ import annotations

from services.aggregator.block_cache import Lru
from services.aggregator.rollup import RollupKey

KEY = RollupKey("bot", "v1", "support-reply", 2, "gpt-4o")


def test_a_changed_row_revision_misses_and_the_least_recently_used_entry_goes_first() -> None:
    cache: Lru[str] = Lru(2)
    rows = frozenset({(1440, 0, KEY, 10), (1, 5, KEY, 11)})
    cache.put("v1", rows, "merged")
    assert cache.get("v1", rows) == "merged"
    assert cache.get("v1", frozenset({(1440, 0, KEY, 10), (1, 5, KEY, 12)})) is None  # row 2 was updated
    assert cache.get("v1", frozenset({(1440, 0, KEY, 10)})) is None  # a different cover
    cache.put("v2", rows, "b")
    cache.get("v1", rows)
    cache.put("v3", rows, "c")
    assert cache.get("v2", rows) is None and cache.get("v1", rows) == "merged"
