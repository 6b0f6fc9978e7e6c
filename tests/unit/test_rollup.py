"""Rollup arithmetic: covers tile ranges exactly, levels agree, cells merge in any order, scores settle."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.rollup import (
    LATENCY,
    LEVELS,
    NS_PER_MINUTE,
    AppliedScore,
    Cell,
    Generation,
    RollupKey,
    at_levels,
    cover,
    minute_cells,
    sketches_from_blob,
    to_blob,
)
from services.aggregator.scores import TraceSpan, settle

PROJECT = uuid.UUID(int=1)
KEY = RollupKey("bot", "v1", "support-reply", 2, "gpt-4o")


def _gen(minute: int, latency: float, key: RollupKey = KEY) -> Generation:
    return Generation(PROJECT, minute * NS_PER_MINUTE + 7, key, latency, None, 10, 20, 0.5, False)


@given(st.integers(min_value=0, max_value=30_000_000), st.integers(min_value=0, max_value=200_000))
def test_cover_tiles_the_range_exactly_with_aligned_blocks(start: int, length: int) -> None:
    blocks = cover(start, start + length)
    at = start
    for width, bucket in blocks:
        assert width in LEVELS and bucket % width == 0 and bucket == at
        at += width
    assert at == start + length


def test_a_thirty_day_range_needs_few_blocks() -> None:
    start = 28_000_000 + 17  # not aligned to anything
    assert len(cover(start, start + 30 * 1440)) <= 45


@given(st.lists(st.tuples(st.integers(0, 100_000), st.floats(0.1, 1e5)), min_size=1, max_size=60))
def test_every_level_holds_every_generation_once(events: list[tuple[int, float]]) -> None:
    cells = at_levels(minute_cells([_gen(m, lat) for m, lat in events]))
    for width in LEVELS:
        level = [c for (_, w, _, _), c in cells.items() if w == width]
        assert sum(c.generations for c in level) == len(events)
        assert sum(c.sketches[LATENCY].count for c in level) == len(events)
        assert sum(c.input_tokens for c in level) == 10 * len(events)


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0.1, 1e5)), min_size=2, max_size=40), st.randoms())
def test_cells_merge_the_same_in_any_order(events: list[tuple[int, float]], rnd) -> None:  # type: ignore[no-untyped-def]
    parts = [minute_cells([_gen(0, lat)])[(PROJECT, 1, 0, KEY)] for _, lat in events]
    one, other = Cell(), Cell()
    for p in parts:
        one.absorb(p)
    shuffled = parts[:]
    rnd.shuffle(shuffled)
    for p in shuffled:
        other.absorb(p)
    assert (one.generations, one.first_ns, one.last_ns) == (other.generations, other.first_ns, other.last_ns)
    assert one.sketches[LATENCY].quantiles([0.1, 0.5, 0.9]) == other.sketches[LATENCY].quantiles([0.1, 0.5, 0.9])


def test_scores_count_by_name_and_errors_are_counted_not_valued() -> None:
    scores = [
        AppliedScore(PROJECT, 0, KEY, "helpfulness", 4.0, False, True),
        AppliedScore(PROJECT, 0, KEY, "helpfulness", 2.0, False, True),
        AppliedScore(PROJECT, 0, KEY, "helpfulness", 0.0, True, True),
        AppliedScore(PROJECT, 0, KEY, "tone", 0.0, False, False, "polite"),
        AppliedScore(PROJECT, 0, KEY, "tone", 0.0, False, False, "polite"),
        AppliedScore(PROJECT, 0, KEY, "tone", 0.0, False, False, "curt"),
    ]
    cell = minute_cells([], scores)[(PROJECT, 1, 0, KEY)]
    sketches, errors, categories = sketches_from_blob(to_blob(cell))
    assert sketches["score:helpfulness"].count == 2
    assert errors == {"helpfulness": 1}
    assert "score:tone" not in sketches
    assert categories == {"tone": {"polite": 2, "curt": 1}}
    assert cell.generations == 0


def test_a_score_of_few_distinct_values_answers_exact_quantiles_through_merges() -> None:
    thumbs = [minute_cells([], [AppliedScore(PROJECT, 0, KEY, "thumbs", v, False, True)]) for v in (1, 1, 1, 0, 1)]
    merged = Cell()
    for cells in thumbs:
        merged.absorb(cells[(PROJECT, 1, 0, KEY)])
    sketch = sketches_from_blob(to_blob(merged))[0]["score:thumbs"]
    assert sketch.quantiles([0.5, 0.05, 0.95]) == [1.0, 0.0, 1.0]  # a bin would say 0.995
    rating = sketches_from_blob(
        to_blob(
            minute_cells(
                [], [AppliedScore(PROJECT, 0, KEY, "rating", float(v), False, True) for v in (1, 2, 2, 3, 4, 5, 5)]
            )[(PROJECT, 1, 0, KEY)]
        )
    )[0]["score:rating"]
    assert rating.quantiles([0.5]) == [3.0]


def _span(span_id: bytes, start: int, generation: bool, parent: bytes = b"\x01" * 8) -> TraceSpan:
    return TraceSpan(span_id, parent, start, generation, KEY)


def test_a_score_waits_until_its_span_is_stored() -> None:
    assert settle(b"a" * 8, []) is None
    assert settle(b"a" * 8, [_span(b"b" * 8, 1, True)]) is None


def test_a_score_of_a_chain_span_or_a_trace_counts_toward_the_first_generation() -> None:
    chain = _span(b"c" * 8, 0, False, parent=b"")
    late, early = _span(b"l" * 8, 9, True), _span(b"e" * 8, 5, True)
    for named in (b"c" * 8, b""):
        settled = settle(named, [chain, late, early])
        assert settled is not None and settled.counts_toward == early


def test_a_trace_without_generations_settles_its_scores_without_rollup() -> None:
    root = _span(b"r" * 8, 0, False, parent=b"")
    settled = settle(b"", [root])
    assert settled is not None and settled.counts_toward is None and settled.span_id == root.span_id
    assert settle(b"", [_span(b"x" * 8, 0, False)]) is None  # no root yet: wait
