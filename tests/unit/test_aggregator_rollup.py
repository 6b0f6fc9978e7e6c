"""The write path's array versions against the per-object arithmetic they replace: the same cells
from generation records, the same sketches per group, and the same stored bytes when a batch's
cells are merged into rollup rows."""

from __future__ import annotations

import itertools
import math
import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator.decode import (
    HAS_COST,
    HAS_INPUT,
    HAS_INPUT_COST,
    HAS_OUTPUT,
    HAS_OUTPUT_COST,
    HAS_TTFT,
    IS_ERROR,
    IS_GENERATION,
    SPAN_DTYPE,
)
from services.aggregator.rollup import (
    COST,
    LATENCY,
    TTFT,
    Cell,
    Generation,
    RollupKey,
    absorb_into_blobs,
    generation_cells,
    minute_cells,
    sketches_from_blob,
    to_blob,
)
from services.aggregator.sketches import Sketch, encode, sketches_of_groups

PROJECTS = (uuid.UUID(int=1), uuid.UUID(int=2))
KEYS = [
    (p, RollupKey(name, app, "reply", v, "gpt-4o"))
    for p in PROJECTS
    for name in ("bot-a", "bot-b")
    for app in ("a", "b")
    for v in (1, 2)
]
MINUTE_NS = 60_000_000_000

finite = st.floats(min_value=-1e6, max_value=1e9, allow_nan=False)
value = st.one_of(st.none(), finite, st.just(math.nan), st.just(0.0))
generation = st.tuples(
    st.integers(0, len(KEYS) - 1),
    st.integers(-3 * MINUTE_NS, 40 * MINUTE_NS),
    st.floats(min_value=0, max_value=1e6),
    value,
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.one_of(st.none(), st.integers(0, 10**6)),
    value,
    st.booleans(),
    st.booleans(),  # a generation (else another span of the trace, which rolls up nothing)
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
)


def _records(rows: list[tuple]) -> tuple[np.ndarray, list[Generation]]:
    records = np.zeros(len(rows), dtype=SPAN_DTYPE)
    gens = []
    for i, (key, start, latency, ttft, inputs, outputs, cost, error, generation, part) in enumerate(rows):
        flags = (
            (HAS_TTFT if ttft is not None else 0)
            | (HAS_INPUT if inputs is not None else 0)
            | (HAS_OUTPUT if outputs is not None else 0)
            | (HAS_COST if cost is not None else 0)
            | (IS_ERROR if error else 0)
            | (IS_GENERATION if generation else 0)
            | (HAS_INPUT_COST | HAS_OUTPUT_COST if part is not None else 0)
        )
        end = start + int(latency * 1e6)
        half = None if part is None else part / 2
        fields = (latency, ttft or 0.0, inputs or 0, outputs or 0, cost or 0.0, part or 0.0, half or 0.0)
        records[i] = (key, flags, start, end, *fields)
        project, rollup_key = KEYS[key]
        if generation:
            gens.append(Generation(project, start, rollup_key, latency, ttft, inputs, outputs, cost, error, part, half))
    return records, gens


def _same_sketch(a: Sketch, b: Sketch) -> bool:
    ea, eb = encode(a), encode(b)
    return ea[0] == eb[0] and ea[2:] == eb[2:] and math.isclose(a.total, b.total, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=150)
@given(st.lists(generation, max_size=80))
def test_cells_of_generation_records_are_the_cells_of_the_generations(rows: list[tuple]) -> None:
    records, gens = _records(rows)
    fast, reference = generation_cells(records, KEYS), minute_cells(gens)
    assert fast.keys() == reference.keys()
    for cid, want in reference.items():
        got = fast[cid]
        assert (got.generations, got.errors, got.input_tokens, got.output_tokens) == (
            want.generations,
            want.errors,
            want.input_tokens,
            want.output_tokens,
        )
        assert (got.first_ns, got.last_ns) == (want.first_ns, want.last_ns)
        assert (got.cost, got.input_cost, got.output_cost) == (want.cost, want.input_cost, want.output_cost)
        assert got.sketches.keys() == want.sketches.keys()
        assert all(_same_sketch(got.sketches[n], want.sketches[n]) for n in want.sketches)


@given(
    st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-0.0)), min_size=1, max_size=60), st.data()
)
def test_sketches_of_groups_are_the_sketches_of_each_group(values: list[float], data: st.DataObject) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(values) - 1 or 1), max_size=6)) or []) - {len(values)})
    starts = np.array([0, *cuts], dtype=np.int64)
    array = np.array(values)
    bounds = [*starts.tolist(), len(values)]
    got = sketches_of_groups(array, starts)
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        assert _same_sketch(got[i], Sketch.of(array[a:b]))


def _cell(rng: np.random.Generator, n: int) -> Cell:
    if n == 0:
        return Cell()
    latency = rng.lognormal(6.5, 2.0, n)
    signed = latency * rng.choice([1, -1, 0], n)
    sketches = {LATENCY: Sketch.of(latency), TTFT: Sketch.of(signed[: n // 2]), COST: Sketch.of(latency[:0])}
    if n % 3 == 0:
        sketches["score:helpfulness"] = Sketch.of(rng.integers(1, 6, n).astype(float), exact=True)
    if n % 5 == 0:  # past EXACT_LIMIT distinct values: kept as a sketch only
        sketches["score:similarity"] = Sketch.of(rng.random(n), exact=True)
    categories = {"tone": {"polite": n, "rude": 1}} if n % 2 == 0 else {}
    errors = {"helpfulness": 1} if n % 4 == 0 else {}
    return Cell(n, 1, 10, 20, 5, 2, 3, 1, 2, sketches, errors, categories)


@settings(max_examples=60)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_merging_cells_into_stored_blobs_gives_the_bytes_of_one_merge_at_a_time(seed: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    stored = [to_blob(_cell(rng, int(rng.integers(0, 3000)))) if rng.integers(0, 3) else b"" for _ in range(rows)]
    new = [_cell(rng, int(rng.integers(0, 300))) for _ in range(rows)]
    expected = []
    for blob, cell in zip(stored, new, strict=True):
        sketches, errors, categories = sketches_from_blob(blob)
        merged = Cell(sketches=sketches, score_errors=errors, categories=categories)
        merged.absorb(cell)
        expected.append(to_blob(merged))
    assert absorb_into_blobs(stored, new) == expected
