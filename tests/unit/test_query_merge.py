"""Merging many versions' rows at once answers what merging each version's sketches one by one answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.aggregator import version_merge
from services.aggregator.block_cache import StoredRows
from services.aggregator.rollup import Cell, RollupKey, to_blob
from services.aggregator.sketches import Sketch, merge
from services.aggregator.version_merge import QUANTILES, decode_row, merge_groups, stored_row

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# a row: a few metrics, each a list of values (an empty list: the metric is absent from that row);
# scores keep their exact values while few: ratings mostly, a continuous score past EXACT_LIMIT at times
row_values = st.fixed_dictionaries(
    {},
    optional={
        "latency_ms": st.lists(finite, max_size=30),
        "cost": st.lists(finite, max_size=30),
        "score:helpfulness": st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]), max_size=30),
        "score:similarity": st.lists(finite, max_size=80),
    },
)


def _sketch(name: str, values: list[float]) -> Sketch:
    return Sketch.of(values, exact=name.startswith("score:"))


def _blob(metrics: dict[str, list[float]], errors: dict[str, int] | None = None) -> bytes:
    categories = {"tone": {"polite": 2, "curt": 1}} if "cost" in metrics else {}
    sketches = {n: _sketch(n, v) for n, v in metrics.items()}
    return to_blob(Cell(sketches=sketches, score_errors=errors or {}, categories=categories))


def _expected(rows: list[dict[str, list[float]]]) -> dict[str, Sketch]:
    names = {n for r in rows for n in r}
    merged = {n: merge([_sketch(n, r[n]) for r in rows if n in r]) for n in names}
    return {n: s for n, s in merged.items() if s.count}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(row_values, max_size=6), min_size=1, max_size=5))
def test_every_groups_summary_is_the_merge_of_its_rows_sketches(groups: list[list[dict[str, list[float]]]]) -> None:
    _check(groups, merge_groups([[decode_row(_blob(r)) for r in rows] for rows in groups]))


def _check(groups: list[list[dict[str, list[float]]]], merged: version_merge.Merged) -> None:
    for rows, summaries in zip(groups, merged.summaries, strict=True):
        expected = _expected(rows)
        assert set(summaries) == set(expected)
        for name, sketch in expected.items():
            got = summaries[name]
            assert (got.count, got.low, got.high) == (sketch.count, sketch.low, sketch.high)
            assert math.isclose(got.total, sketch.total, rel_tol=1e-9, abs_tol=1e-6)
            assert [got.quantiles[q] for q in QUANTILES] == sketch.quantiles(QUANTILES)


def test_score_errors_add_up_per_group_and_empty_rows_count_nothing() -> None:
    a = decode_row(_blob({"score:helpfulness": [1.0]}, {"helpfulness": 2}))
    b = decode_row(_blob({}, {"helpfulness": 1, "toxicity": 1}))
    merged = merge_groups([[a, b, decode_row(b"")], []])
    assert merged.score_errors == [{"helpfulness": 3, "toxicity": 1}, {}]
    assert merged.summaries[1] == {}


def test_keys_spread_too_far_for_one_matrix_are_merged_one_version_at_a_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(version_merge, "_MAX_CELLS", 10)
    rows = [[{"latency_ms": [1e-3, 5.0, 1e5]}, {"latency_ms": [7.0]}], [{"latency_ms": [-2.0, 3.0]}]]
    merged = merge_groups([[decode_row(_blob(r)) for r in g] for g in rows])
    for group, summaries in zip(rows, merged.summaries, strict=True):
        expected = _expected(group)["latency_ms"]
        assert [summaries["latency_ms"].quantiles[q] for q in QUANTILES] == expected.quantiles(QUANTILES)


def test_lognormal_latency_quantiles_of_a_month_of_rows_are_within_one_percent_of_numpy() -> None:
    rng = np.random.default_rng(7)
    days = [rng.lognormal(6.5, 0.8, 2_000) for _ in range(30)]
    merged = merge_groups([[decode_row(_blob({"latency_ms": list(d)})) for d in days]])
    values = np.concatenate(days)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.percentile(values, q * 100))
        assert abs(merged.summaries[0]["latency_ms"].quantiles[q] - exact) <= 0.01 * exact


def test_a_stored_row_is_found_only_at_its_revision_and_old_rows_leave_past_the_byte_budget() -> None:
    key = RollupKey("bot", "v1", "support-reply", 2, "gpt-4o")
    row = stored_row(_blob({"latency_ms": [1.0, 2.0]}))
    cache = StoredRows(budget_bytes=row.nbytes * 2)
    cache.put(("p", 60, 0, key), 10, row)
    assert cache.get(("p", 60, 0, key), 10) is row
    assert cache.get(("p", 60, 0, key), 11) is None  # the row was updated since
    cache.put(("p", 60, 60, key), 12, row)
    cache.get(("p", 60, 0, key), 10)
    cache.put(("p", 60, 120, key), 13, row)
    assert len(cache) == 2 and cache.nbytes == row.nbytes * 2
    assert cache.get(("p", 60, 60, key), 12) is None and cache.get(("p", 60, 0, key), 10) is row


needs_c = pytest.mark.skipif(version_merge._bins is None, reason="the C accelerator is not built")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(row_values, st.dictionaries(st.sampled_from(["helpfulness", "toxicity"]), st.integers(1, 3)))
        ),
        min_size=1,
        max_size=5,
    )
)
def test_summarising_blobs_in_c_answers_what_decoding_and_merging_them_answers(
    groups: list[list[tuple[dict[str, list[float]], dict[str, int]]]],
) -> None:
    blobs = [[_blob(values, errors) for values, errors in rows] + [b""] for rows in groups]
    accelerator = version_merge._bins
    if accelerator is not None:  # the C path reads every blob the writer makes
        assert accelerator.summarise_blobs(
            blobs, QUANTILES, version_merge._VALUES, -version_merge._KEY_SPAN, version_merge.Summary
        )
    try:
        version_merge._bins = None  # type: ignore[assignment]
        python = version_merge.summarise_blobs(blobs)
    finally:
        version_merge._bins = accelerator
    merged = version_merge.summarise_blobs(blobs)
    _check([[values for values, _ in rows] for rows in groups], merged)
    assert merged.score_errors == python.score_errors
    for mine, theirs in zip(merged.summaries, python.summaries, strict=True):
        assert {n: (s.count, s.low, s.high, s.quantiles) for n, s in mine.items()} == {
            n: (s.count, s.low, s.high, s.quantiles) for n, s in theirs.items()
        }


@needs_c
@pytest.mark.parametrize(
    "blob",
    [
        _blob({"latency_ms": [1.0, 2.0]})[:-1],  # cut short
        _blob({"latency_ms": [1.0, 2.0]}) + b"\x00",  # bytes after the row
        b"\x81\xa1x\x80",  # a field that is not "s", "e" or "c"
        b"\x81\xa1c\x81\xa1t\xc1",  # categorical counts that are not msgpack
        b"\x81\xa1s\x81\xa1m\x93\x01\x02\x03",  # a sketch of three fields
        b"\x81\xa1s\x81\xa1m\x97\x01\xcb" + b"\x7f\xf0" + b"\x00" * 6 + b"\x01\x01\x00\x90\x90",  # an infinite total
        b"\x81\xa1s\x81\xa1m\x97\x01\x01\x01\x01\x00\x94\x00\x09\x00\xc4\x01\x01\x90",  # no such count type
        b"\x81\xa1s\x81\xa1m\x97\x01\x01\x01\x01\x00\x94\x00\x01\x00\xc4\x01\x01\x90",  # half a uint16
        b"\x81\xa1s\x81\xa1m\x97\x01\x01\x01\x01\x00\x94\x00\x00\xce\x7f\xff\xff\xff\xc4\x01\x01\x90",  # a far key
        "not bytes",
    ],
)
def test_blobs_the_c_summary_is_not_sure_of_are_left_to_the_python_twin(blob: object) -> None:
    good = _blob({"latency_ms": [3.0]})
    found = version_merge._bins.summarise_blobs(
        [[good], [good, blob]],  # type: ignore[list-item]
        QUANTILES,
        version_merge._VALUES,
        -version_merge._KEY_SPAN,
        version_merge.Summary,
    )
    assert found is None


def test_a_blob_spelled_out_in_bytes_is_read_by_both_paths() -> None:
    # rollup.to_blob's format, fixed in users' databases: {"s": {name: [count, total, low, high, zeros,
    # positive store, negative store]}, "e": {}}, here a sparse store of keys 0 and 70
    blob = b"\x82\xa1s\x81\xaalatency_ms\x97\x02\xcb@\x08\x00\x00\x00\x00\x00\x00\xcb?\xf0\x00\x00\x00\x00"
    blob += b"\x00\x00\xcb@\x00\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\xc4\x08\x00\x00\x00\x00F\x00\x00"
    blob += b"\x00\xc4\x02\x01\x01\x90\xa1e\x80"
    assert blob == _blob({"latency_ms": [1.0, 2.0]})
    expected = Sketch.of([1.0, 2.0]).quantiles(QUANTILES)
    for merged in (version_merge.summarise_blobs([[blob, b""]]), merge_groups([[decode_row(blob)]])):
        summary = merged.summaries[0]["latency_ms"]
        assert (summary.count, summary.total, summary.low, summary.high) == (2, 3.0, 1.0, 2.0)
        assert [summary.quantiles[q] for q in QUANTILES] == expected


def test_a_ratings_median_is_exact_on_both_paths_and_a_sketch_once_values_are_many() -> None:
    ratings = [_blob({"score:helpfulness": [4.0, 4.0, 5.0]}), _blob({"score:helpfulness": [1.0, 4.0]})]
    many = _blob({"score:helpfulness": [0.5 + v for v in range(100)]})
    for summarise in (version_merge.summarise_blobs, lambda g: merge_groups([[decode_row(b) for b in r] for r in g])):
        exact, sketched = summarise([ratings, [*ratings, many]]).summaries
        assert exact["score:helpfulness"].quantiles[0.5] == 4.0  # the bin of 4 would say 3.98…
        values = sorted([4.0, 4.0, 5.0, 1.0, 4.0] + [0.5 + v for v in range(100)])
        truth = values[(len(values) - 1) // 2]
        median = sketched["score:helpfulness"].quantiles[0.5]  # a sketch's, within its accuracy
        assert median != truth and abs(median - truth) <= 0.01 * truth
