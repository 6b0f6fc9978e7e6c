"""What metrics queries have already read, remembered by the revisions of the rollup rows it came from.

The revision of a row is its Postgres `xmin` (a new one for every committed update), so a key that
matches means the very same row contents: answers are exact, never stale. Two levels:

- a finished ROW per version, keyed by the set of (block, row revision) it was made of, reused while
  none of the version's rows changed and the range covers the same blocks (a quiet version);
- every rollup row's sketches (its blob as stored), keyed by the row's identity and revision. A query
  over 30 days reads ~16 rows per version, and a range whose edges moved (a rolling window, another
  user's dashboard) still covers mostly the same wide blocks: only its new edge rows are fetched, the
  rest come from here. Fetching every row's sketches is most of a cold query.

A time series has a third: each point's JSON as sent (`SeriesPoints`), keyed by the (row identity,
revision) of the rows it was made of. A 30-day hourly series of 20 versions is 14,400 points; making
them again from the rows' sketches, or even encoding them again, costs several times the whole answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.aggregator.version_merge import StoredRow

# what identifies every row (and its revision) that went into a merge
Fingerprint = frozenset[Hashable]
V = TypeVar("V")

# A ROW is ~2 kB: ~20 MB. A row's blob takes ~2.3 kB on average in a 30-day query (a month's block ~6 kB):
# 64 MB hold ~25,000 rows, those of many 30-day queries of 100 versions (~1,600 rows each, mostly shared).
ROW_ENTRIES = 10_000
SKETCH_BYTES = 64 * 1024**2
# (project as an int, (width in minutes, bucket, project name, app version, prompt name, prompt version,
# model)): a rollup row's identity, in the columns' order (a slice of the row read); an int hashes in C,
# a UUID does not
RowIdentity = tuple[int, tuple[int, int, str, str, str, int, str]]
# Points held: 64 MB (their JSON plus ~400 bytes each): all fields of a 30-day hourly series of 20
# versions take ~21 MB, four fields ~7 MB.
POINT_BYTES = 64 * 1024**2
# A held point's key, fingerprint, entry and dict slot, beside its JSON; a series' key and dicts.
POINT_OVERHEAD_BYTES = 400
SERIES_OVERHEAD_BYTES = 1024
# Blocks remembered as read (~200 bytes each): those of hundreds of queries' covers.
BLOCKS_READ = 20_000


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


class StoredRows:
    """Rollup rows' sketches as stored, by identity, each valid for one revision; the least recently used
    go first once their bytes pass the budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._items: OrderedDict[RowIdentity, tuple[int, StoredRow]] = OrderedDict()

    def get(self, identity: RowIdentity, revision: int) -> StoredRow | None:
        item = self._items.get(identity)
        if item is None or item[0] != revision:
            return None
        self._items.move_to_end(identity)
        return item[1]

    def put(self, identity: RowIdentity, revision: int, row: StoredRow) -> None:
        old = self._items.pop(identity, None)
        if old is not None:
            self.nbytes -= old[1].nbytes
        self._items[identity] = (revision, row)
        self.nbytes += row.nbytes
        while self.nbytes > self.budget_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._items)


class BlocksRead:
    """The (project, width, bucket) blocks whose rows' sketches have been read, the most recent ones: a hint
    that those rows are held (a block not in it has its sketches read with its counters)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, block: Hashable) -> bool:
        return block in self._items

    def add(self, block: Hashable) -> None:
        self._items[block] = None
        self._items.move_to_end(block)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


# A series' version's points held: (each bucket's rows and revisions, each bucket's JSON; b"": no point).
HeldPoints = tuple[dict[int, Hashable], dict[int, bytes]]


class SeriesPoints:
    """Time series points as encoded JSON, by series (scope, width, fields), version and bucket, each valid
    for the rows (identities and revisions) it was made of. A series is read whole, so the least recently
    read series go first once the bytes pass the budget (a series past the budget alone starts over)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._series: OrderedDict[Hashable, dict[Hashable, HeldPoints]] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}

    def series(self, key: Hashable) -> dict[Hashable, HeldPoints]:
        """The points held of series `key` by version: look points up in it directly."""
        versions = self._series.get(key)
        if versions is None:  # (a series held counts too, so that many empty ones go in time)
            versions = self._series[key] = {}
            self._sizes[key] = SERIES_OVERHEAD_BYTES
            self.nbytes += SERIES_OVERHEAD_BYTES
            self._fit(key)
        self._series.move_to_end(key)
        return versions

    def put(self, key: Hashable, version: Hashable, bucket: int, rows: Hashable, encoded: bytes) -> None:
        self.put_all(key, [(version, bucket, rows, encoded)])

    def put_all(self, key: Hashable, points: Sequence[tuple[Hashable, int, Hashable, bytes]]) -> None:
        """Hold each (version, bucket, rows, JSON) of series `key`."""
        versions = self.series(key)
        added = 0
        for version, bucket, rows, encoded in points:
            held = versions.get(version)
            if held is None:
                held = versions[version] = ({}, {})
            old = held[1].get(bucket)
            added += len(encoded) - (len(old) if old is not None else -POINT_OVERHEAD_BYTES)
            held[0][bucket] = rows
            held[1][bucket] = encoded
        self._sizes[key] += added
        self.nbytes += added
        self._fit(key)

    def _fit(self, key: Hashable) -> None:
        """Drop the least recently read series until the bytes fit; `key` last, starting over empty."""
        while self.nbytes > self.budget_bytes and self._series:
            dropped, held_points = self._series.popitem(last=False)
            self.nbytes -= self._sizes.pop(dropped)
            if dropped == key:  # this series alone is past the budget: hold it from now on, empty
                held_points.clear()
                self._series[key], self._sizes[key] = held_points, SERIES_OVERHEAD_BYTES
                self.nbytes += SERIES_OVERHEAD_BYTES
                return

    def __contains__(self, key: Hashable) -> bool:
        return key in self._series

    def __len__(self) -> int:
        """The points held."""
        return sum(len(held[1]) for versions in self._series.values() for held in versions.values())


@dataclass
class BlockCache:
    """Per-process memory of metrics queries: ROWs by all their rows, rows' sketches by revision."""

    rows: Lru[dict[str, Any]]
    sketches: StoredRows
    blocks_read: BlocksRead
    points: SeriesPoints = field(default_factory=lambda: SeriesPoints(POINT_BYTES))

    @classmethod
    def create(cls) -> BlockCache:
        return cls(Lru(ROW_ENTRIES), StoredRows(SKETCH_BYTES), BlocksRead(BLOCKS_READ))
