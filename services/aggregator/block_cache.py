"""What a metrics query has already merged, remembered by the revisions of the rollup rows it came from.

A query over 30 days reads about a dozen rollup rows per version, most of them blocks that ended long
ago and no longer change; merging their sketches (thousands of bins each) is the query's whole cost.
So each version's merge is kept, keyed by the set of (block, row revision) it was made of, where the
revision is the row's Postgres `xmin` (a new one for every committed update). A key that matches
means the very same rows: the answer is exact, never stale. Two levels:

- a finished ROW, reused while none of the version's rows changed (a quiet version);
- the merged sketches of the version's settled blocks (ended a few minutes ago), reused while only
  its recent blocks change (a version taking live traffic merges one or two small rows per query).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.aggregator.rollup import RollupKey
from services.aggregator.sketches import Sketch

# (width in minutes, bucket, key, revision) of every row that went into a merge
Fingerprint = frozenset[tuple[int, int, RollupKey, int]]
V = TypeVar("V")

# A version's merged sketches hold a few thousand bins (up to ~60 kB): these bound the cache near 60 + 20 MB.
SETTLED_ENTRIES = 1_000
ROW_ENTRIES = 10_000


class Lru(Generic[V]):
    """A bounded map that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, tuple[Fingerprint, V]] = OrderedDict()

    def get(self, key: Hashable, fingerprint: Fingerprint) -> V | None:
        """The value stored under `key` if it was made from exactly `fingerprint`'s rows."""
        item = self._items.get(key)
        if item is None or item[0] != fingerprint:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, fingerprint: Fingerprint, value: V) -> None:
        self._items[key] = (fingerprint, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class MergedSketches:
    sketches: dict[str, Sketch]
    score_errors: dict[str, int]

    def compact(self) -> MergedSketches:
        """A copy holding only its own bins (a merge's rows are views into one wide matrix)."""
        return MergedSketches({n: s.compact() for n, s in self.sketches.items()}, dict(self.score_errors))


@dataclass
class BlockCache:
    """Per-process memory of merged versions: ROWs by all their rows, sketches by their settled rows."""

    rows: Lru[dict[str, Any]]
    settled: Lru[MergedSketches]

    @classmethod
    def create(cls) -> BlockCache:
        return cls(Lru(ROW_ENTRIES), Lru(SETTLED_ENTRIES))
