"""Rollup arithmetic: cells of counts, totals and sketches per version and time block, merged exactly.

A cell belongs to (project, level, bucket, RollupKey). Levels are block widths in minutes, each a
multiple of the one before and aligned on the Unix epoch, so every block of a level is a union of
blocks of the finer ones. A stored generation adds to one block of every level; a query covers
[from, to) greedily with the widest aligned blocks that fit (`cover`), reading a few dozen rows per
version whatever the range, instead of one per minute.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import msgspec
import numpy as np

from services.aggregator.decode import (
    HAS_COST,
    HAS_INPUT,
    HAS_INPUT_COST,
    HAS_OUTPUT,
    HAS_OUTPUT_COST,
    HAS_TTFT,
    IS_ERROR,
    IS_GENERATION,
)
from services.aggregator.sketches import Encoded, Sketch, absorb_encoded, decode, encode, merge, sketches_of_groups

# 1, 5, 15 minutes; 1, 6 hours; 1, 2, 4, 8, 16, 32 days. A range's edges need at most a few blocks
# of each level, and the long middle a handful of the 2^k-day blocks.
LEVELS: tuple[int, ...] = (1, 5, 15, 60, 360, 1440, 2880, 5760, 11520, 23040, 46080)
NS_PER_MINUTE = 60_000_000_000

LATENCY = "latency_ms"
TTFT = "ttft_ms"
INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
TOTAL_TOKENS = "total_tokens"  # input + output of a generation that reports either
COST = "cost"
ALL_SCORES = "score"  # every numeric score of the cell, whatever its name: the ROW's median_score
SCORE_PREFIX = "score:"


def score_metric(name: str) -> str:
    return SCORE_PREFIX + name


# Costs add up exactly as integers of 10^-12 USD: a span's cost (a double, as the client or the price
# table gave it) is rounded to that, so sums read as decimals (3.4968375, not 3.4968374999999994).
PICO = 10**12


# A span's cost this large is not a cost (it would not fit the integers a cell adds up): left out,
# as NaN and infinities are.
_MAX_USD = 9e6


def pico_of(usd_values: np.ndarray) -> np.ndarray:
    """Costs in USD as integer picodollars; a value that is not a cost (NaN, infinite, past _MAX_USD) is 0."""
    usable = np.isfinite(usd_values) & (np.abs(usd_values) < _MAX_USD)
    return np.rint(np.where(usable, usd_values, 0.0) * PICO).astype(np.int64)


def usd(picodollars: int) -> Decimal:
    return Decimal(picodollars).scaleb(-12)


# NamedTuples, not frozen dataclasses: a batch builds and hashes one per span, and a tuple's
# construction and hash are C code (a frozen dataclass's cost several µs per span).
class RollupKey(NamedTuple):
    """What a generation is grouped by: the app (an app version belongs to it), the versions being
    compared, and the model."""

    project_name: str
    app_version: str
    prompt_name: str
    prompt_version: int
    model: str


# (project, width in minutes, first epoch minute of the block, key)
CellId = tuple[uuid.UUID, int, int, RollupKey]


@dataclass
class Cell:
    """Exact counts and totals, first and last start, and sketches of one block of one key."""

    generations: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0  # picodollars (PICO), as are the two below
    input_cost: int = 0
    output_cost: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    sketches: dict[str, Sketch] = field(default_factory=dict)
    score_errors: dict[str, int] = field(default_factory=dict)  # failed evaluations, by score name
    categories: dict[str, dict[str, int]] = field(default_factory=dict)  # categorical scores: name → value → count

    def absorb(self, other: Cell) -> None:
        """Add `other` into this cell (the same as having seen both cells' events)."""
        self.generations += other.generations
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.input_cost += other.input_cost
        self.output_cost += other.output_cost
        if other.first_ns is not None:
            self.first_ns = other.first_ns if self.first_ns is None else min(self.first_ns, other.first_ns)
        if other.last_ns is not None:
            self.last_ns = other.last_ns if self.last_ns is None else max(self.last_ns, other.last_ns)
        for name, sketch in other.sketches.items():
            mine = self.sketches.get(name)
            self.sketches[name] = sketch if mine is None else merge([mine, sketch])
        for name, count in other.score_errors.items():
            self.score_errors[name] = self.score_errors.get(name, 0) + count
        add_categories(self.categories, other.categories)


def add_categories(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for name, counts in more.items():
        mine = into.setdefault(name, {})
        for value, count in counts.items():
            mine[value] = mine.get(value, 0) + count


class Generation(NamedTuple):
    """What rollups need of a stored generation."""

    project_id: uuid.UUID
    start_ns: int
    key: RollupKey
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    is_error: bool
    input_cost: float | None = None
    output_cost: float | None = None


@dataclass(frozen=True)
class AppliedScore:
    """A score joined to the generation it counts toward (that generation's key and start)."""

    project_id: uuid.UUID
    start_ns: int
    key: RollupKey
    name: str
    value: float
    is_error: bool
    numeric: bool  # a categorical score counts by its category (`category`), not by value
    category: str = ""


def _present(values: list[float | int | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None], dtype=np.float64)


def _pico_sum(values: list[float | None]) -> int:
    return int(pico_of(_present(values)).sum())  # type: ignore[arg-type]


def _generation_cell(gens: list[Generation]) -> Cell:
    inputs = [g.input_tokens for g in gens]
    outputs = [g.output_tokens for g in gens]
    totals = [
        None if g.input_tokens is None and g.output_tokens is None else (g.input_tokens or 0) + (g.output_tokens or 0)
        for g in gens
    ]
    costs = [g.cost for g in gens]
    return Cell(
        generations=len(gens),
        errors=sum(1 for g in gens if g.is_error),
        input_tokens=sum(v for v in inputs if v is not None),
        output_tokens=sum(v for v in outputs if v is not None),
        cost=_pico_sum(costs),  # type: ignore[arg-type]
        input_cost=_pico_sum([g.input_cost for g in gens]),
        output_cost=_pico_sum([g.output_cost for g in gens]),
        first_ns=min(g.start_ns for g in gens),
        last_ns=max(g.start_ns for g in gens),
        sketches={
            LATENCY: Sketch.of(np.array([g.latency_ms for g in gens], dtype=np.float64)),
            TTFT: Sketch.of(_present([g.ttft_ms for g in gens])),
            INPUT_TOKENS: Sketch.of(_present(inputs)),  # type: ignore[arg-type]
            OUTPUT_TOKENS: Sketch.of(_present(outputs)),  # type: ignore[arg-type]
            TOTAL_TOKENS: Sketch.of(_present(totals)),  # type: ignore[arg-type]
            COST: Sketch.of(_present(costs)),  # type: ignore[arg-type]
        },
    )


def _score_cell(scores: list[AppliedScore]) -> Cell:
    cell = Cell()
    by_name: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        if s.is_error:
            cell.score_errors[s.name] = cell.score_errors.get(s.name, 0) + 1
        elif s.numeric:
            by_name[s.name].append(s.value)
        else:
            counts = cell.categories.setdefault(s.name, {})
            counts[s.category] = counts.get(s.category, 0) + 1
    for name, values in by_name.items():
        cell.sketches[score_metric(name)] = Sketch.of(np.array(values), exact=True)
    numeric = [s.value for s in scores if s.numeric and not s.is_error]
    if numeric:
        cell.sketches[ALL_SCORES] = Sketch.of(np.array(numeric), exact=True)
    return cell


def minute_cells(gens: Iterable[Generation], scores: Iterable[AppliedScore] = ()) -> dict[CellId, Cell]:
    """Group generations and applied scores into one-minute cells (by the generation's start)."""
    gen_groups: dict[CellId, list[Generation]] = defaultdict(list)
    for g in gens:
        gen_groups[(g.project_id, 1, g.start_ns // NS_PER_MINUTE, g.key)].append(g)
    score_groups: dict[CellId, list[AppliedScore]] = defaultdict(list)
    for s in scores:
        score_groups[(s.project_id, 1, s.start_ns // NS_PER_MINUTE, s.key)].append(s)
    cells = {cid: _generation_cell(group) for cid, group in gen_groups.items()}
    for cid, group in score_groups.items():
        cells.setdefault(cid, Cell()).absorb(_score_cell(group))
    return cells


def generation_cells(records: np.ndarray, keys: Sequence[tuple[uuid.UUID, RollupKey]]) -> dict[CellId, Cell]:
    """One-minute cells of the generations among span records (decode.SPAN_DTYPE), grouped with array
    operations.

    The same cells as minute_cells() makes of the same generations, without a Python object per
    generation: records are sorted by (key, minute) once, so each cell is a contiguous run of them.
    """
    records = records[(records["flags"] & IS_GENERATION) != 0]
    if records.size == 0:
        return {}
    minutes = records["start_ns"] // NS_PER_MINUTE
    order = np.lexsort((minutes, records["key"]))
    g, minutes = records[order], minutes[order]
    key = g["key"]
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (minutes[1:] != minutes[:-1])])
    flags = g["flags"]

    def present(flag: int, column: str) -> np.ndarray:
        return np.where(flags & flag != 0, g[column], np.nan)

    def total(flag: int, column: str) -> list:
        return np.add.reduceat(np.where(flags & flag != 0, g[column], 0), starts).tolist()

    def pico_total(flag: int, column: str) -> list:
        return np.add.reduceat(np.where(flags & flag != 0, pico_of(g[column]), 0), starts).tolist()

    some_tokens = flags & (HAS_INPUT | HAS_OUTPUT) != 0
    tokens = np.where(flags & HAS_INPUT != 0, g["input_tokens"], 0) + np.where(
        flags & HAS_OUTPUT != 0, g["output_tokens"], 0
    )
    sketches = {
        LATENCY: sketches_of_groups(g["latency_ms"], starts),
        TTFT: sketches_of_groups(present(HAS_TTFT, "ttft_ms"), starts),
        INPUT_TOKENS: sketches_of_groups(present(HAS_INPUT, "input_tokens"), starts),
        OUTPUT_TOKENS: sketches_of_groups(present(HAS_OUTPUT, "output_tokens"), starts),
        TOTAL_TOKENS: sketches_of_groups(np.where(some_tokens, tokens, np.nan), starts),
        COST: sketches_of_groups(present(HAS_COST, "cost"), starts),
    }
    columns = zip(
        np.diff(np.append(starts, g.size)).tolist(),
        np.add.reduceat((flags & IS_ERROR != 0).astype(np.int64), starts).tolist(),
        total(HAS_INPUT, "input_tokens"),
        total(HAS_OUTPUT, "output_tokens"),
        pico_total(HAS_COST, "cost"),
        pico_total(HAS_INPUT_COST, "input_cost"),
        pico_total(HAS_OUTPUT_COST, "output_cost"),
        np.minimum.reduceat(g["start_ns"], starts).tolist(),
        np.maximum.reduceat(g["start_ns"], starts).tolist(),
        strict=True,
    )
    cells: dict[CellId, Cell] = {}
    for i, (count, errors, inputs, outputs, cost, input_cost, output_cost, first, last) in enumerate(columns):
        project, rollup_key = keys[int(key[starts[i]])]
        cell_sketches = {name: per_group[i] for name, per_group in sketches.items()}
        cell = Cell(count, errors, int(inputs), int(outputs), cost, input_cost, output_cost, first, last, cell_sketches)
        cells[(project, 1, int(minutes[starts[i]]), rollup_key)] = cell
    return cells


def batch_minute_cells(
    records: np.ndarray, keys: Sequence[tuple[uuid.UUID, RollupKey]], scores: Iterable[AppliedScore] = ()
) -> dict[CellId, Cell]:
    """minute_cells() of generation records and the scores applied with them."""
    cells = generation_cells(records, keys)
    for cid, cell in minute_cells((), scores).items():
        cells[cid] = combine_cells([cells[cid], cell]) if cid in cells else cell
    return cells


def combine_cells(cells: list[Cell]) -> Cell:
    """One cell holding the sum of `cells`, merging each sketch once (not pairwise)."""
    if len(cells) == 1:
        return cells[0]
    out = Cell()
    parts: dict[str, list[Sketch]] = defaultdict(list)
    for cell in cells:
        counters = Cell(
            cell.generations,
            cell.errors,
            cell.input_tokens,
            cell.output_tokens,
            cell.cost,
            cell.input_cost,
            cell.output_cost,
            cell.first_ns,
            cell.last_ns,
            score_errors=cell.score_errors,
            categories=cell.categories,
        )
        out.absorb(counters)
        for name, sketch in cell.sketches.items():
            parts[name].append(sketch)
    out.sketches = {name: merge(sketches) for name, sketches in parts.items()}
    return out


def at_levels(minutes: dict[CellId, Cell], levels: tuple[int, ...] = LEVELS) -> dict[CellId, Cell]:
    """The minute cells added into the block of every level that holds them.

    Each level is built from the one below it (every block is a union of blocks of the finer
    level), so once a batch's minutes share a block, the coarser levels reuse that one cell
    instead of merging the same minutes again at every level. Cells are therefore shared between
    levels: treat them as values (combine_cells), never absorb into one in place.
    """
    out: dict[CellId, Cell] = {}
    below = minutes
    for width in levels:
        groups: dict[CellId, list[Cell]] = defaultdict(list)
        for (project, _, start, key), cell in below.items():
            groups[(project, width, start - start % width, key)].append(cell)
        below = {cid: combine_cells(cells) for cid, cells in groups.items()}
        out.update(below)
    return out


def cover(start_minute: int, end_minute: int, levels: tuple[int, ...] = LEVELS) -> list[tuple[int, int]]:
    """Aligned blocks (width, bucket) that exactly tile [start_minute, end_minute), widest first where they fit."""
    blocks: list[tuple[int, int]] = []
    at = start_minute
    while at < end_minute:
        width = next(w for w in reversed(levels) if at % w == 0 and at + w <= end_minute)
        blocks.append((width, at))
        at += width
    return blocks


def to_blob(cell: Cell) -> bytes:
    """The cell's sketches, score errors and categorical counts as stored in rollups.sketches."""
    blob: dict[str, object] = {"s": {n: encode(s) for n, s in cell.sketches.items()}, "e": cell.score_errors}
    if cell.categories:
        blob["c"] = cell.categories
    return msgspec.msgpack.encode(blob)


def absorb_into_blobs(blobs: Sequence[bytes], cells: Sequence[Cell]) -> list[bytes]:
    """[to_blob(the stored cell absorbing cell)] for each stored blob and cell, every sketch merged at once."""
    decoded = [msgspec.msgpack.decode(blob) if blob else {"s": {}, "e": {}} for blob in blobs]
    where: list[tuple[dict, str]] = []
    stored: list[Encoded | None] = []
    new: list[Sketch] = []
    for raw, cell in zip(decoded, cells, strict=True):
        for name, sketch in cell.sketches.items():
            where.append((raw["s"], name))
            stored.append(raw["s"].get(name))
            new.append(sketch)
        errors = raw["e"]
        for name, count in cell.score_errors.items():
            errors[name] = errors.get(name, 0) + count
        if cell.categories:
            add_categories(raw.setdefault("c", {}), cell.categories)
    for (sketches, name), merged in zip(where, absorb_encoded(stored, new), strict=True):
        sketches[name] = merged
    return [msgspec.msgpack.encode(raw) for raw in decoded]


def sketches_from_blob(blob: bytes) -> tuple[dict[str, Sketch], dict[str, int], dict[str, dict[str, int]]]:
    """A stored blob's sketches, score errors and categorical counts."""
    if not blob:
        return {}, {}, {}
    raw = msgspec.msgpack.decode(blob)
    return {n: decode(s) for n, s in raw["s"].items()}, dict(raw["e"]), dict(raw.get("c", {}))
