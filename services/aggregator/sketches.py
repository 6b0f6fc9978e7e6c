"""Mergeable quantile sketches: DDSketch's logarithmic mapping, vectorised with NumPy, stored compactly.

A sketch counts values in bins whose bounds grow by a factor gamma, so any quantile it answers is
within ACCURACY (relative) of the true order statistic at that rank. Bins come from the `ddsketch`
library's LogarithmicMapping (the same keys and representative values); what this module adds is
adding whole arrays at once, merging many sketches with a few array additions, and an encoding
that keeps a minute's sparse sketch and a month's dense one both small.

A sketch of a score also keeps its exact distinct values and their counts while there are at most
EXACT_LIMIT of them (a boolean, a 1–5 rating, a category's number): its quantiles are then the
exact order statistics (a thumbs-up median is 1, never the bin's 0.995), and a merge stays exact
while the union stays that small.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from ddsketch.mapping import LogarithmicMapping

# 0.5% leaves room under the contract's 1%: numpy's interpolated percentile can sit between two
# order statistics, and the sketch's error is measured against one of them.
ACCURACY = 0.005
MAPPING = LogarithmicMapping(ACCURACY)
# The library's own arithmetic (ddsketch.mapping.KeyMapping and LogarithmicMapping), so that the
# vectorised keys are bit-for-bit the keys MAPPING.key() gives.
_MULTIPLIER = (1 / math.log1p(2 * ACCURACY / (1 - ACCURACY))) * math.log(2)
_VALUE_FACTOR = 2.0 / (1 + MAPPING.gamma)
_MIN_VALUE = MAPPING.min_possible

_DTYPES: tuple[type[np.unsignedinteger], ...] = (np.uint8, np.uint16, np.uint32, np.uint64)
_DTYPE_MAX = tuple(int(np.iinfo(t).max) for t in _DTYPES)
_EMPTY = np.zeros(0, dtype=np.int64)
# Distinct values a sketch keeps exactly (scores): beyond, it is a sketch like the others.
EXACT_LIMIT = 64
# (distinct values ascending, float64; their counts, int64 > 0)
Exact = tuple[np.ndarray, np.ndarray]


def exact_of(values: np.ndarray) -> Exact | None:
    """The distinct values of `values` with their counts, or None past EXACT_LIMIT of them."""
    distinct, counts = np.unique(values, return_counts=True)
    return (distinct, counts.astype(np.int64)) if distinct.size <= EXACT_LIMIT else None


def merge_exact(tables: Sequence[Exact | None]) -> Exact | None:
    """The union of exact tables, or None when one is not exact or the union is past EXACT_LIMIT."""
    if not tables or any(t is None for t in tables):
        return None
    if len(tables) == 1:
        return tables[0]
    values = np.concatenate([t[0] for t in tables])  # type: ignore[index]
    counts = np.concatenate([t[1] for t in tables])  # type: ignore[index]
    distinct, where = np.unique(values, return_inverse=True)
    if distinct.size > EXACT_LIMIT:
        return None
    return distinct, np.bincount(where, weights=counts, minlength=distinct.size).astype(np.int64)


def exact_quantiles(table: Exact, qs: Sequence[float]) -> list[float]:
    """The values at rank q·(count−1) (the order statistic at its floor), as the bins' walk ranks them."""
    values, counts = table
    cumulative = np.cumsum(counts)
    ranks = np.asarray(qs, dtype=np.float64) * max(int(cumulative[-1]) - 1, 0)
    index = np.minimum(np.searchsorted(cumulative, ranks, side="right"), values.size - 1)
    return [float(v) for v in values[index]]


def keys_of(values: np.ndarray) -> np.ndarray:
    """Bin keys of positive values, as MAPPING.key() computes them one at a time."""
    return np.ceil(np.log2(values) * _MULTIPLIER).astype(np.int64)


def values_of(keys: np.ndarray) -> np.ndarray:
    """The representative value of each bin key, as MAPPING.value() computes it."""
    return np.power(2.0, keys / _MULTIPLIER) * _VALUE_FACTOR


@dataclass
class Bins:
    """Counts of consecutive keys starting at `offset` (a dense store)."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: _EMPTY)

    @classmethod
    def of_keys(cls, keys: np.ndarray) -> Bins:
        if keys.size == 0:
            return cls()
        low = int(keys.min())
        return cls(low, np.bincount(keys - low).astype(np.int64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def of_counts(cls, keys: np.ndarray, counts: np.ndarray) -> Bins:
        """Bins holding counts[i] at keys[i] (keys may repeat)."""
        if keys.size == 0:
            return cls()
        low = int(keys.min())
        return cls(low, np.bincount(keys - low, weights=counts).astype(np.int64))

    def compact(self) -> Bins:
        idx = np.flatnonzero(self.counts)
        if idx.size == 0:
            return Bins()
        return Bins(self.offset + int(idx[0]), self.counts[idx[0] : idx[-1] + 1].copy())

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(self.counts)
        return idx + self.offset, self.counts[idx]


def merge_bins(parts: Sequence[Bins]) -> Bins:
    """One dense store holding the sum of all parts (a part may be returned as is: stores are never mutated)."""
    parts = [p for p in parts if p.counts.size]
    if not parts:
        return Bins()
    if len(parts) == 1:
        return parts[0]
    low = min(p.offset for p in parts)
    high = max(p.offset + p.counts.size for p in parts)
    out = np.zeros(high - low, dtype=np.int64)
    for p in parts:
        start = p.offset - low
        out[start : start + p.counts.size] += p.counts
    return Bins(low, out)


@dataclass
class Sketch:
    """Count, sum, exact min and max, and DDSketch bins of positive, negative and zero values."""

    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    zeros: int = 0
    positive: Bins = field(default_factory=Bins)
    negative: Bins = field(default_factory=Bins)  # keyed by magnitude
    exact: Exact | None = None  # the values themselves, while few (scores only)

    @classmethod
    def of(cls, values: Iterable[float] | np.ndarray, exact: bool = False) -> Sketch:
        """A sketch of the finite values given (NaN and infinities are not values); `exact` keeps the
        distinct values too, while there are at most EXACT_LIMIT of them."""
        array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
        array = array[np.isfinite(array)]
        if array.size == 0:
            return cls()
        tiny = np.abs(array) < _MIN_VALUE
        pos = array[(array > 0) & ~tiny]
        neg = -array[(array < 0) & ~tiny]
        return cls(
            count=int(array.size),
            total=float(array.sum()),
            low=float(array.min()),
            high=float(array.max()),
            zeros=int(tiny.sum()),
            positive=Bins.of_keys(keys_of(pos)),
            negative=Bins.of_keys(keys_of(neg)),
            exact=exact_of(array) if exact else None,
        )

    def compact(self) -> Sketch:
        """The same sketch holding copies of only its non-empty bin ranges."""
        return Sketch(
            self.count,
            self.total,
            self.low,
            self.high,
            self.zeros,
            self.positive.compact(),
            self.negative.compact(),
            self.exact,
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The value at rank q·(count−1), within ACCURACY of the exact order statistic; None if empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        if self.count == 0:
            return [None for _ in qs]
        if self.exact is not None:
            return list(exact_quantiles(self.exact, qs))
        # Walk the dense counts with cumulative sums (no per-bin objects): a query asks this of
        # hundreds of merged sketches, each a row of a wide, mostly empty matrix.
        ranks = np.asarray(qs, dtype=np.float64) * (self.count - 1)
        neg = np.cumsum(self.negative.counts)
        pos = np.cumsum(self.positive.counts)
        below = int(neg[-1]) if neg.size else 0
        out = np.zeros(ranks.size, dtype=np.float64)
        in_neg = ranks < below
        if in_neg.any():
            # ascending values run through the negatives from the largest magnitude down
            idx = np.searchsorted(neg, below - ranks[in_neg], side="left")
            out[in_neg] = -values_of(idx + self.negative.offset)
        in_pos = ranks >= below + self.zeros
        if in_pos.any() and pos.size:
            idx = np.searchsorted(pos, ranks[in_pos] - below - self.zeros, side="right")
            out[in_pos] = values_of(np.minimum(idx, pos.size - 1) + self.positive.offset)
        # the exact extremes are known: never answer outside them
        return [float(v) for v in np.clip(out, self.low, self.high)]


def _bins_of_groups(keys: np.ndarray, groups: np.ndarray, n: int) -> list[Bins]:
    """Bins.of_keys of each group's keys (`groups` sorted: each group's keys are contiguous)."""
    bounds = np.searchsorted(groups, np.arange(n + 1)).tolist()
    out = []
    for a, b in itertools.pairwise(bounds):
        if a == b:
            out.append(Bins())
            continue
        part = keys[a:b]
        low = int(part.min())
        out.append(Bins(low, np.bincount(part - low)))
    return out


def sketches_of_groups(values: np.ndarray, starts: np.ndarray) -> list[Sketch]:
    """[Sketch.of(values[starts[i]:starts[i + 1]]) for each i], the last group running to the end.

    One pass of array operations over all groups, then a few per group: the write path sketches
    every metric of every minute cell of a batch, hundreds of small groups at a time.
    """
    n = int(starts.size)
    group = np.repeat(np.arange(n), np.diff(np.append(starts, values.size)))
    finite = np.isfinite(values)
    v, g = values[finite], group[finite]
    count = np.bincount(g, minlength=n).tolist()
    total = np.bincount(g, weights=v, minlength=n).tolist()
    low, high = np.full(n, math.inf), np.full(n, -math.inf)
    if v.size:
        present = np.flatnonzero(np.bincount(g, minlength=n))
        first = np.searchsorted(g, present)
        low[present] = np.minimum.reduceat(v, first)
        high[present] = np.maximum.reduceat(v, first)
    tiny = np.abs(v) < _MIN_VALUE
    zeros = np.bincount(g[tiny], minlength=n).tolist()
    pos, neg = (v > 0) & ~tiny, (v < 0) & ~tiny
    positive = _bins_of_groups(keys_of(v[pos]), g[pos], n)
    negative = _bins_of_groups(keys_of(-v[neg]), g[neg], n) if neg.any() else [Bins() for _ in range(n)]
    lows, highs = low.tolist(), high.tolist()
    return [
        Sketch(count[i], total[i], lows[i], highs[i], zeros[i], positive[i], negative[i]) if count[i] else Sketch()
        for i in range(n)
    ]


def merge(sketches: Sequence[Sketch]) -> Sketch:
    """The sketch of the union of the sketched values (associative and commutative).

    Sketches are values: never mutated once made, so a merge of one live sketch is that sketch.
    The write path merges a batch's cell into every level's row (hundreds of small merges per
    batch), hence one pass over the parts rather than a generator per field.
    """
    live = [s for s in sketches if s.count]
    if not live:
        return Sketch()
    if len(live) == 1:
        return live[0]
    count = zeros = 0
    low, high = math.inf, -math.inf
    for s in live:
        count += s.count
        zeros += s.zeros
        low = s.low if s.low < low else low
        high = s.high if s.high > high else high
    return Sketch(
        count=count,
        total=math.fsum(s.total for s in live),
        low=low,
        high=high,
        zeros=zeros,
        positive=merge_bins([s.positive for s in live]),
        negative=merge_bins([s.negative for s in live]),
        exact=merge_exact([s.exact for s in live]),
    )


# Encoding: a list that msgpack carries as is, [count, total, low, high, zeros, positive, negative]
# and, for a sketch keeping its values, an eighth item [values as float64, counts as int64] (or nil
# once past EXACT_LIMIT). Each store is written dense (offset + counts in the smallest unsigned type
# that fits) or sparse (keys + counts), whichever is fewer bytes: a minute's few values spread far
# apart are sparse, a month's are dense.
Encoded = list[object]


def encode_exact(table: Exact) -> list[bytes]:
    return [table[0].astype("<f8").tobytes(), table[1].astype("<i8").tobytes()]


def decode_exact(raw: Sequence[object]) -> Exact | None:
    """An encoded sketch's exact table (its eighth item), or None when it keeps none."""
    if len(raw) < 8 or not raw[7]:
        return None
    values, counts = cast(tuple[bytes, bytes], raw[7])
    return np.frombuffer(values, dtype="<f8"), np.frombuffer(counts, dtype="<i8").astype(np.int64)


def _encode_bins(bins: Bins) -> list[object]:
    if bins.counts.size == 0:
        return []
    keys, counts = bins.nonzero()
    dtype_code = next(i for i, top in enumerate(_DTYPE_MAX) if int(counts.max()) <= top)
    dtype = _DTYPES[dtype_code]
    dense_bytes = bins.counts.size * np.dtype(dtype).itemsize
    sparse_bytes = keys.size * (4 + np.dtype(dtype).itemsize)
    if dense_bytes <= sparse_bytes:
        first, last = int(keys[0]), int(keys[-1])
        dense = bins.counts[first - bins.offset : last - bins.offset + 1]
        return [0, dtype_code, first, dense.astype(dtype).tobytes()]
    deltas = np.diff(keys, prepend=keys[0]).astype(np.int32)
    return [1, dtype_code, int(keys[0]), deltas.tobytes(), counts.astype(dtype).tobytes()]


def _decode_bins(raw: Sequence[object]) -> Bins:
    if not raw:
        return Bins()
    dtype = _DTYPES[int(raw[1])]  # type: ignore[call-overload]
    first = int(raw[2])  # type: ignore[call-overload]
    if raw[0] == 0:
        return Bins(first, np.frombuffer(raw[3], dtype=dtype).astype(np.int64))  # type: ignore[call-overload]
    keys = first + np.cumsum(np.frombuffer(raw[3], dtype=np.int32), dtype=np.int64)  # type: ignore[call-overload]
    counts = np.frombuffer(raw[4], dtype=dtype).astype(np.int64)  # type: ignore[call-overload]
    dense = np.zeros(int(keys[-1] - first) + 1, dtype=np.int64)
    dense[keys - first] = counts
    return Bins(first, dense)


def encode(sketch: Sketch) -> Encoded:
    out: Encoded = [
        sketch.count,
        sketch.total,
        sketch.low if sketch.count else 0.0,
        sketch.high if sketch.count else 0.0,
        sketch.zeros,
        _encode_bins(sketch.positive),
        _encode_bins(sketch.negative),
    ]
    if sketch.exact is not None:
        out.append(encode_exact(sketch.exact))
    return out


def decode(raw: Sequence[object]) -> Sketch:
    count = int(raw[0])  # type: ignore[call-overload]
    if count == 0:
        return Sketch()
    return Sketch(
        count=count,
        total=float(raw[1]),  # type: ignore[arg-type]
        low=float(raw[2]),  # type: ignore[arg-type]
        high=float(raw[3]),  # type: ignore[arg-type]
        zeros=int(raw[4]),  # type: ignore[call-overload]
        positive=_decode_bins(raw[5]),  # type: ignore[arg-type]
        negative=_decode_bins(raw[6]),  # type: ignore[arg-type]
        exact=decode_exact(raw),
    )


def _encode_many(stores: list[tuple[int, list[object]]], bins: list[tuple[int, Bins]], n: int) -> list[list[object]]:
    """For each of n slots, _encode_bins() of the sum of its encoded stores and bins, in the same bytes.

    Every slot's stores are added into its own stretch of one array (a dense store in one slice
    addition, no per-bin work), then counts, types and byte strings come from whole-array
    operations: the write path re-encodes every touched rollup row's sketches on each batch.
    """
    out: list[list[object]] = [[] for _ in range(n)]
    if not stores and not bins:
        return out
    parts: list[tuple[int, int, np.ndarray, np.ndarray | None]] = []  # slot, first key, counts, sparse keys
    low: dict[int, int] = {}
    high: dict[int, int] = {}
    for slot, part in bins:
        last = part.offset + part.counts.size - 1
        parts.append((slot, part.offset, part.counts, None))
        low[slot] = min(low.get(slot, part.offset), part.offset)
        high[slot] = max(high.get(slot, last), last)
    for slot, raw in stores:
        dtype, first = _DTYPES[raw[1]], int(raw[2])  # type: ignore[call-overload]
        keys = None
        if raw[0] == 0:
            counts = np.frombuffer(raw[3], dtype=dtype)  # type: ignore[call-overload]
            last = first + counts.size - 1
        else:
            keys = np.cumsum(np.frombuffer(raw[3], dtype=np.int32), dtype=np.int64)  # type: ignore[call-overload]
            counts = np.frombuffer(raw[4], dtype=dtype)  # type: ignore[call-overload]
            last = first + int(keys[-1])
        if counts.dtype == np.uint64:
            counts = counts.view(np.int64)  # counts stay far below 2**63; uint64 + int64 would be float
        parts.append((slot, first, counts, keys))
        low[slot] = min(low.get(slot, first), first)
        high[slot] = max(high.get(slot, last), last)
    # each slot's stretch spans the union of its stores' ranges, as merge_bins() makes it
    present = sorted(low)
    offset = {slot: low[slot] for slot in present}
    widths = [high[slot] - low[slot] + 1 for slot in present]
    bases = list(itertools.accumulate(widths, initial=0))
    base = dict(zip(present, bases, strict=False))
    laid = np.zeros(bases[-1], dtype=np.int64)
    for slot, first, counts, keys in parts:
        at = base[slot] + first - offset[slot]
        if keys is None:
            laid[at : at + counts.size] += counts
        else:
            laid[at + keys] += counts  # a store's keys are distinct
    starts = np.array(bases[:-1], dtype=np.int64)
    width = np.array(widths, dtype=np.int64)
    top = np.maximum.reduceat(laid, starts)
    codes = (top > _DTYPE_MAX[0]).astype(np.int64) + (top > _DTYPE_MAX[1]) + (top > _DTYPE_MAX[2])
    nonzero = np.flatnonzero(laid)
    a, b = np.searchsorted(nonzero, starts), np.searchsorted(nonzero, starts + width)
    itemsize = 1 << codes
    dense = width * itemsize <= (b - a) * (4 + itemsize)
    deltas = np.diff(nonzero, prepend=0).astype(np.int32)
    deltas[a[a < nonzero.size]] = 0
    delta_bytes = deltas.tobytes()
    as_type: dict[int, tuple[bytes, bytes]] = {}
    for code in set(codes.tolist()):
        as_type[code] = (laid.astype(_DTYPES[code]).tobytes(), laid[nonzero].astype(_DTYPES[code]).tobytes())
    live = b > a  # a slot whose counts cancelled to nothing stays empty
    first_at, last_at = nonzero[a[live]], nonzero[b[live] - 1]  # positions in `laid` of each slot's edges
    firsts = (first_at - starts[live] + np.array([offset[p] for p in present], dtype=np.int64)[live]).tolist()
    rows = zip(
        np.array(present)[live].tolist(),
        codes[live].tolist(),
        dense[live].tolist(),
        firsts,
        first_at.tolist(),
        (last_at + 1).tolist(),
        a[live].tolist(),
        b[live].tolist(),
        strict=True,
    )
    for slot, code, is_dense, first, start, stop, i, j in rows:
        size = 1 << code
        if is_dense:
            out[slot] = [0, code, first, as_type[code][0][start * size : stop * size]]
        else:
            out[slot] = [1, code, first, delta_bytes[i * 4 : j * 4], as_type[code][1][i * size : j * size]]
    return out


def absorb_encoded(stored: Sequence[Encoded | None], new: Sequence[Sketch]) -> list[Encoded]:
    """[encode(merge([decode(s), n])) for s, n in zip(stored, new)] (None: nothing stored), bins all at once."""
    positive: list[tuple[int, list[object]]] = []
    negative: list[tuple[int, list[object]]] = []
    new_positive: list[tuple[int, Bins]] = []
    new_negative: list[tuple[int, Bins]] = []
    for slot, (old, sketch) in enumerate(zip(stored, new, strict=True)):
        if old is not None and old[0]:
            if old[5]:
                positive.append((slot, old[5]))  # type: ignore[arg-type]
            if old[6]:
                negative.append((slot, old[6]))  # type: ignore[arg-type]
        if sketch.count:
            if sketch.positive.counts.size:
                new_positive.append((slot, sketch.positive))
            if sketch.negative.counts.size:
                new_negative.append((slot, sketch.negative))
    pos = _encode_many(positive, new_positive, len(new))
    neg = _encode_many(negative, new_negative, len(new))
    out: list[Encoded] = []
    for slot, (old, sketch) in enumerate(zip(stored, new, strict=True)):
        if old is None or not old[0]:
            scalars = [sketch.count, sketch.total, sketch.low, sketch.high, sketch.zeros] if sketch.count else None
        elif not sketch.count:
            scalars = [int(old[0]), float(old[1]), float(old[2]), float(old[3]), int(old[4])]  # type: ignore[call-overload, arg-type]
        else:
            scalars = [
                int(old[0]) + sketch.count,  # type: ignore[call-overload]
                math.fsum((float(old[1]), sketch.total)),  # type: ignore[arg-type]
                min(float(old[2]), sketch.low),  # type: ignore[arg-type]
                max(float(old[3]), sketch.high),  # type: ignore[arg-type]
                int(old[4]) + sketch.zeros,  # type: ignore[call-overload]
            ]
        if not scalars:
            out.append(encode(Sketch()))
            continue
        if old is None or not old[0]:
            exact = sketch.exact
        else:
            exact = decode_exact(old) if not sketch.count else merge_exact([decode_exact(old), sketch.exact])
        out.append([*scalars, pos[slot], neg[slot], *([encode_exact(exact)] if exact is not None else [])])
    return out
