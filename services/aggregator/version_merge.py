"""Many versions' rollup rows merged at once, and their quantiles read off all versions together.

A 30-day query of 100 versions merges ~1,600 rollup rows holding ~3 million bins in ~11,000 stores.
Merging version by version pays NumPy's per-call cost hundreds of times per query; here every
metric gets one (version × bin key) matrix: each dense store is added into its version's row with
one slice, all sparse stores of all versions are counted with one bincount, and the quantiles of
every version come from one cumulative sum per matrix. The answers are those of
`sketches.merge(...).quantiles(...)`: the same bins, ranks and clipping to the exact extremes.

Where it is built, `_bins.c` does all of it in one call straight from the rows' blobs as Postgres
returns them (`summarise_blobs`: no Python object per row, sketch or store, and nothing to decode when
a row is first read); the msgpack decode and NumPy code here are its twin, used without a compiler or
for input the C code is not sure of.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from services.aggregator.sketches import Exact, exact_quantiles, merge_exact, values_of

try:  # the C accelerator (setup.py builds it when a compiler is there); the Python twin below otherwise
    from services.aggregator import _bins
except ImportError:  # pragma: no cover - depends on the build
    _bins = None  # type: ignore[assignment]
ACCELERATED = _bins is not None

# Every quantile a ROW shows (latency p50/p95/p99, scores p05/p50/p95, medians of the rest).
QUANTILES = (0.5, 0.05, 0.95, 0.99)
# A matrix larger than this (keys spread over a huge range) is built one version at a time instead.
_MAX_CELLS = 4_000_000
_DTYPES: tuple[type[np.unsignedinteger], ...] = (np.uint8, np.uint16, np.uint32, np.uint64)
_ITEMSIZE = tuple(np.dtype(t).itemsize for t in _DTYPES)
# A StoredRow's object and bytes headers, beside its blob.
_STORED_OVERHEAD_BYTES = 100
# values_of() of every key a finite double can have at ACCURACY (about ±71,000), made by NumPy once, so
# that the C summary's quantiles are the very numbers the Python twin computes (libm's pow and NumPy's
# differ in the last bit for some keys).
_KEY_SPAN = 72_000
with np.errstate(over="ignore"):
    _VALUES = values_of(np.arange(-_KEY_SPAN, _KEY_SPAN, dtype=np.int64)).tobytes()


# sketches.encode()'s list, decoded as a tuple: [count, total, low, high, zeros, positive, negative] and,
# for a score, its exact table (values, counts) or None; each store a tuple too ((): empty)
EncodedSketch = tuple[Any, ...]


class DecodedRow(
    msgspec.Struct, frozen=True, gc=False, rename={"sketches": "s", "score_errors": "e", "categories": "c"}
):
    """A rollup row's sketches as sketches.encode() wrote them (bins left as bytes), and score errors:
    what the Python twin merges. Tuples, not lists: a query's decode makes no objects to track."""

    sketches: dict[str, EncodedSketch] = {}
    score_errors: dict[str, int] = {}
    categories: dict[str, dict[str, int]] = {}


EMPTY_ROW = DecodedRow()
_ROW_DECODER = msgspec.msgpack.Decoder(DecodedRow)


def decode_row(blob: bytes) -> DecodedRow:
    """One msgpack decode of rollups.sketches; the bins stay bytes until a merge reads them."""
    if not blob:
        return EMPTY_ROW
    return _ROW_DECODER.decode(blob)


class StoredRow(msgspec.Struct, frozen=True, gc=False):
    """A rollup row's sketches as stored (rollup.to_blob's bytes), which summarise_blobs reads in place."""

    blob: bytes
    nbytes: int


def stored_row(blob: bytes) -> StoredRow:
    return StoredRow(blob, len(blob) + _STORED_OVERHEAD_BYTES)


class Summary(msgspec.Struct, frozen=True, gc=False):
    """One metric of one version: exact count, sum and extremes, and its QUANTILES (within ACCURACY).
    A Struct: the C summary makes hundreds per query, and a dataclass's __init__ cost ~2 µs each."""

    count: int
    total: float
    low: float
    high: float
    quantiles: dict[float, float]

    @property
    def mean(self) -> float:
        return self.total / self.count


@dataclass
class Merged:
    """Each group's summaries by metric name, and its failed evaluations by score name."""

    summaries: list[dict[str, Summary]]
    score_errors: list[dict[str, int]]


def summarise_blobs(groups: Sequence[Sequence[bytes]]) -> Merged:
    """merge_groups() of each group of rows given as their blobs (b"": a row without sketches)."""
    found = None
    if _bins is not None:
        lists = [g if type(g) is list else list(g) for g in groups]  # (most are lists: no copy)
        found = _bins.summarise_blobs(lists, QUANTILES, _VALUES, -_KEY_SPAN, Summary)
    if found is None:  # no accelerator, or a blob it is not sure of
        return merge_groups([[decode_row(blob) for blob in g] for g in groups])
    return Merged(*found)


def merge_groups(groups: Sequence[Sequence[DecodedRow]]) -> Merged:
    """Summaries of the merge of each group of rows (a group: one version's rows of a query)."""
    parts: dict[str, list[tuple[int, Sequence[Any]]]] = defaultdict(list)
    errors: list[dict[str, int]] = [{} for _ in groups]
    for slot, rows in enumerate(groups):
        mine = errors[slot]
        for row in rows:
            for name, raw in row.sketches.items():
                if raw[0]:
                    parts[name].append((slot, raw))
            for name, count in row.score_errors.items():
                mine[name] = mine.get(name, 0) + count
    summaries: list[dict[str, Summary]] = [{} for _ in groups]
    for name, metric in parts.items():
        for slot, summary in _summarise(metric, len(groups)).items():
            summaries[slot][name] = summary
    return Merged(summaries, errors)


def _summarise(parts: list[tuple[int, Sequence[Any]]], n: int) -> dict[int, Summary]:
    """Summaries of one metric for every slot that has values."""
    count, total, low, high, zeros = _scalars(parts, n)
    pos_low, pos = _matrix([(slot, raw[5]) for slot, raw in parts if raw[5]], n)  # type: ignore[misc]
    neg_low, neg = _matrix([(slot, raw[6]) for slot, raw in parts if raw[6]], n)  # type: ignore[misc]
    if pos is None or neg is None:  # too wide for one matrix: one version at a time
        return _summarise_one_by_one(parts)
    found = _quantiles(count, zeros, pos_low, pos, neg_low, neg)
    found = np.clip(found, low[:, None], high[:, None])  # never outside the exact extremes
    for slot, table in _exact_tables(parts, n).items():
        if table is not None and int(table[1].sum()) == count[slot]:
            found[slot] = exact_quantiles(table, QUANTILES)
    return {
        slot: Summary(c, t, lo, hi, dict(zip(QUANTILES, q, strict=True)))
        for slot, (c, t, lo, hi, q) in enumerate(
            zip(count.tolist(), total.tolist(), low.tolist(), high.tolist(), found.tolist(), strict=True)
        )
        if c
    }


def _scalars(parts: list[tuple[int, Sequence[Any]]], n: int) -> tuple[np.ndarray, ...]:
    """Each slot's count, total, low, high and zeros."""
    slots = np.fromiter((slot for slot, _ in parts), dtype=np.int64, count=len(parts))
    # count, total, low, high, zeros of every part; float64 holds counts exactly below 2^53
    scalars = np.array([raw[:5] for _, raw in parts], dtype=np.float64).reshape(len(parts), 5)
    count = np.bincount(slots, weights=scalars[:, 0], minlength=n).astype(np.int64)
    zeros = np.bincount(slots, weights=scalars[:, 4], minlength=n).astype(np.int64)
    totals: list[list[float]] = [[] for _ in range(n)]
    for slot, raw in parts:
        totals[slot].append(raw[1])  # type: ignore[arg-type]
    low = np.full(n, np.inf)
    high = np.full(n, -np.inf)
    np.minimum.at(low, slots, scalars[:, 2])
    np.maximum.at(high, slots, scalars[:, 3])
    return count, np.array([math.fsum(t) for t in totals]), low, high, zeros


def _exact_tables(parts: list[tuple[int, Sequence[Any]]], n: int) -> dict[int, Exact | None]:
    """Each slot's union of its parts' exact tables (None: a part keeps none, or the union is too big)."""
    tables: dict[int, list[Exact | None]] = defaultdict(list)
    for slot, raw in parts:
        kept = raw[7] if len(raw) > 7 else None
        tables[slot].append(
            (np.frombuffer(kept[0], dtype="<f8"), np.frombuffer(kept[1], dtype="<i8").astype(np.int64))
            if kept
            else None
        )
    return {slot: merge_exact(found) for slot, found in tables.items()}


def _summarise_one_by_one(parts: list[tuple[int, Sequence[Any]]]) -> dict[int, Summary]:
    by_slot: dict[int, list[tuple[int, Sequence[Any]]]] = defaultdict(list)
    for slot, raw in parts:
        by_slot[slot].append((0, raw))
    out = {}
    for slot, mine in by_slot.items():
        one = _summarise(mine, 1)
        if one:
            out[slot] = one[0]
    return out


def _sparse_parts(stores: list[tuple[int, Sequence[Any]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slot, key, count) of every bin of sparse stores, decoded with a few array operations per count type."""
    by_dtype: dict[int, tuple[list[int], list[int], list[bytes], list[bytes]]] = {}
    for slot, raw in stores:
        kind = by_dtype.get(raw[1])  # type: ignore[call-overload]
        if kind is None:
            kind = by_dtype[raw[1]] = ([], [], [], [])  # type: ignore[index]
        kind[0].append(slot)
        kind[1].append(raw[2])  # type: ignore[arg-type]
        kind[2].append(raw[3])  # type: ignore[arg-type]
        kind[3].append(raw[4])  # type: ignore[arg-type]
    slots_out, keys_out, counts_out = [], [], []
    for dtype_code, (slot_list, firsts, deltas_parts, count_parts) in by_dtype.items():
        deltas = np.frombuffer(b"".join(deltas_parts), dtype=np.int32).astype(np.int64)
        lengths = np.fromiter(map(len, deltas_parts), dtype=np.int64, count=len(deltas_parts)) // 4
        running = np.cumsum(deltas)
        before = (running - deltas)[np.cumsum(lengths) - lengths]  # the running sum where each store starts
        keys_out.append(np.repeat(np.array(firsts, dtype=np.int64) - before, lengths) + running)
        slots_out.append(np.repeat(np.array(slot_list, dtype=np.int64), lengths))
        counts_out.append(np.frombuffer(b"".join(count_parts), dtype=_DTYPES[dtype_code]))
    return np.concatenate(slots_out), np.concatenate(keys_out), np.concatenate(counts_out).astype(np.int64)


def _matrix(stores: list[tuple[int, Sequence[Any]]], n: int) -> tuple[int, np.ndarray | None]:
    """(lowest key, n × width counts) holding every store added into its slot's row; None when too wide.
    A slice addition per dense store, one bincount for all sparse stores."""
    if not stores:
        return 0, np.zeros((n, 0), dtype=np.int64)
    dense = [s for s in stores if s[1][0] == 0]
    sparse = [s for s in stores if s[1][0] != 0]
    # dense store: [0, dtype, first key, counts]; its last key follows from its length
    spans = [(int(raw[2]), int(raw[2]) + len(raw[3]) // _ITEMSIZE[raw[1]]) for _, raw in dense]  # type: ignore[call-overload, arg-type, index]
    low = min((a for a, _ in spans), default=math.inf)
    high = max((b for _, b in spans), default=-math.inf)
    if sparse:
        slots, keys, counts = _sparse_parts(sparse)
        low = min(low, int(keys.min()))
        high = max(high, int(keys.max()) + 1)
    low, width = int(low), int(high - low)
    if n * width > _MAX_CELLS and n > 1:
        return low, None
    matrix = np.zeros((n, width), dtype=np.int64)
    for (slot, raw), (first, last) in zip(dense, spans, strict=True):
        matrix[slot, first - low : last - low] += np.frombuffer(raw[3], dtype=_DTYPES[raw[1]])  # type: ignore[call-overload, index]
    if sparse:
        flat = np.bincount(slots * width + (keys - low), weights=counts, minlength=n * width)
        matrix += flat.astype(np.int64).reshape(n, width)
    return low, matrix


def _quantiles(
    count: np.ndarray, zeros: np.ndarray, pos_low: int, pos: np.ndarray, neg_low: int, neg: np.ndarray
) -> np.ndarray:
    """n × len(QUANTILES) values at rank q·(count−1) of each row, as Sketch.quantiles walks one sketch."""
    qs = np.asarray(QUANTILES, dtype=np.float64)
    ranks = np.maximum(count - 1, 0)[:, None] * qs[None, :]
    out = np.zeros(ranks.shape, dtype=np.float64)
    neg_cum = np.cumsum(neg, axis=1)
    below = neg_cum[:, -1] if neg.shape[1] else np.zeros(count.size, dtype=np.int64)
    if neg.shape[1]:
        in_neg = ranks < below[:, None]
        if in_neg.any():
            # ascending values run through the negatives from the largest magnitude down
            target = below[:, None] - ranks
            idx = (neg_cum[:, None, :] < target[:, :, None]).sum(axis=2)  # searchsorted side="left", row-wise
            out[in_neg] = -values_of(idx + neg_low)[in_neg]
    if pos.shape[1]:
        start = (below + zeros)[:, None]
        in_pos = ranks >= start
        if in_pos.any():
            pos_cum = np.cumsum(pos, axis=1)
            idx = (pos_cum[:, None, :] <= (ranks - start)[:, :, None]).sum(axis=2)  # side="right", row-wise
            out[in_pos] = values_of(np.minimum(idx, pos.shape[1] - 1) + pos_low)[in_pos]
    return out
