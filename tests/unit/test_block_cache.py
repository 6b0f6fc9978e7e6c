"""The query's cache answers only for exactly the rows (and revisions) it was made from."""

from __future__ import annotations

from services.aggregator.block_cache import POINT_OVERHEAD_BYTES, SERIES_OVERHEAD_BYTES, Lru, SeriesPoints
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


def test_series_points_go_by_series_least_recently_read_first_within_their_byte_budget() -> None:
    point = b'{"at":"2026-01-01T00:00:00.000000Z","generation_count":1}'
    cost = len(point) + POINT_OVERHEAD_BYTES
    cache = SeriesPoints(budget_bytes=2 * SERIES_OVERHEAD_BYTES + 3 * cost)
    rows = (("bot", "v1", "reply", 1, "gpt-4o"), 7)
    cache.put("hourly", "v1", 60, rows, point)
    cache.put("hourly", "v1", 120, rows, point)
    cache.put("daily", "v1", 0, rows, point)
    assert cache.series("hourly")["v1"] == ({60: rows, 120: rows}, {60: point, 120: point})
    assert cache.nbytes == 2 * SERIES_OVERHEAD_BYTES + 3 * cost
    cache.put("hourly", "v1", 120, rows, point)  # the same point again: no more bytes
    assert cache.nbytes == 2 * SERIES_OVERHEAD_BYTES + 3 * cost
    cache.put("weekly", "v2", 0, rows, point)  # past the budget: "daily", read least recently, goes whole
    assert "daily" not in cache and "hourly" in cache and "weekly" in cache and len(cache) == 3
    assert cache.series("hourly")["v1"][1] == {60: point, 120: point}
    alone = SeriesPoints(budget_bytes=SERIES_OVERHEAD_BYTES + cost)
    alone.put("hourly", "v1", 60, rows, point)
    alone.put("hourly", "v1", 120, rows, point)  # one series past the budget starts over
    assert len(alone) == 0 and alone.nbytes == SERIES_OVERHEAD_BYTES and alone.series("hourly") == {}
    many = SeriesPoints(budget_bytes=10 * SERIES_OVERHEAD_BYTES)
    for n in range(100):  # series read but never holding a point still go in time
        many.series(n)
    assert many.nbytes <= many.budget_bytes and 99 in many and 0 not in many
