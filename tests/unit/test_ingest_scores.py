"""Scores are checked against their configs before anything is published."""

from __future__ import annotations

import pytest
from vane.v1.bus_pb2 import ScoreDataType, ScoreSource, SpanBatch

from services.common.errors import Invalid, TooLarge
from services.ingest.normalise import SpanGroup
from services.ingest.publish import compose, encode_spans, request_digest
from services.ingest.scores import ScoreConfig, parse_scores, to_scores

TRACE = "5b8efff798038103d269b633813fc60c"


def scores(body: bytes, configs: dict[str, ScoreConfig] | None = None) -> list:  # type: ignore[type-arg]
    return to_scores(parse_scores(body), "p", configs or {}, 1)


def test_one_score_or_a_batch_is_accepted_with_inferred_types() -> None:
    one = scores(b'{"trace_id": "%s", "name": "helpfulness", "value": 4.0}' % TRACE.encode())
    assert one[0].data_type == ScoreDataType.SCORE_DATA_TYPE_NUMERIC and one[0].value == 4.0
    assert one[0].source == ScoreSource.SCORE_SOURCE_API and one[0].score_id
    batch = scores(
        b'[{"trace_id": "%s", "name": "ok", "value": true, "source": "annotation"},'
        b' {"trace_id": "%s", "span_id": "eee19b7ec3c1b174", "name": "tone", "value": "polite", "id": "s-1"}]'
        % (TRACE.encode(), TRACE.encode())
    )
    assert [s.data_type for s in batch] == [
        ScoreDataType.SCORE_DATA_TYPE_BOOLEAN,
        ScoreDataType.SCORE_DATA_TYPE_CATEGORICAL,
    ]
    assert batch[0].value == 1.0 and batch[1].string_value == "polite" and batch[1].score_id == "s-1"
    assert batch[1].span_id.hex() == "eee19b7ec3c1b174"


def test_configs_check_range_and_categories() -> None:
    configs = {
        "rating": ScoreConfig("rating", "numeric", 1.0, 5.0),
        "tone": ScoreConfig("tone", "categorical", categories=("polite", "rude")),
    }
    with pytest.raises(Invalid) as refused:
        scores(
            b'[{"trace_id": "%s", "name": "rating", "value": 7},'
            b' {"trace_id": "%s", "name": "tone", "value": "sarcastic"},'
            b' {"trace_id": "%s", "name": "rating", "value": 3}]' % ((TRACE.encode(),) * 3),
            configs,
        )
    assert [d["index"] for d in refused.value.details] == [0, 1]
    assert "above the maximum" in refused.value.details[0]["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"name": "x", "value": 1}',
        b'{"trace_id": "abc", "name": "x", "value": 1}',
        b'{"trace_id": "%s", "name": "", "value": 1}' % TRACE.encode(),
        b'{"trace_id": "%s", "name": "x", "value": 1, "data_type": "boolean"}' % TRACE.encode(),
        b'{"trace_id": "%s", "name": "x", "value": 1, "source": "robot"}' % TRACE.encode(),
    ],
)
def test_bad_scores_are_refused(body: bytes) -> None:
    if body.endswith(b'"data_type": "boolean"}'):
        assert scores(body)[0].value == 1.0  # 1 is a fine boolean
        return
    with pytest.raises(Invalid):
        scores(body)


def test_large_span_batches_split_under_the_message_limit_without_losing_a_span() -> None:
    spans = [{"name": f"s{i}", "input": "x" * 1000, "span_id": bytes([1] * 8)} for i in range(300)]
    chunks = encode_spans("p", [SpanGroup({"project_id": "p"}, spans)], 5, limit=64 * 1024)
    assert len(chunks) > 1 and all(len(c) <= 64 * 1024 for c in chunks)
    decoded = [SpanBatch.FromString(c) for c in chunks]
    assert [s.name for b in decoded for s in b.spans] == [f"s{i}" for i in range(300)]
    assert all(b.project_id == "p" and b.schema_version == 1 and b.received_unix_nano == 5 for b in decoded)


def test_a_resources_shared_fields_reach_every_span_of_its_group() -> None:
    shared = {"project_id": "p", "app_version": "v2", "eval_tags_json": '[{"eval_name": "is_json"}]'}
    groups = [
        SpanGroup(shared, [{"name": "a", "cost": 0.5}, {"name": "b", "kind": "llm"}]),
        SpanGroup({"project_id": "p"}, [{"name": "c", "app_version": "own"}]),
    ]
    (chunk,) = encode_spans("p", groups, 5, limit=64 * 1024)
    a, b, c = SpanBatch.FromString(chunk).spans
    assert (a.name, a.app_version, a.cost, a.eval_tags_json) == ("a", "v2", 0.5, shared["eval_tags_json"])
    assert (b.name, b.app_version, b.kind, b.HasField("cost")) == ("b", "v2", "llm", False)
    assert (c.name, c.app_version, c.eval_tags_json, c.project_id) == ("c", "own", "", "p")


def test_a_single_record_over_the_limit_is_too_large() -> None:
    from vane.v1.bus_pb2 import CanonicalSpan

    with pytest.raises(TooLarge):
        compose(b"", b"\x1a", [CanonicalSpan(input="x" * 2000).SerializeToString()], limit=1000)


def test_the_message_id_depends_on_project_and_body() -> None:
    assert request_digest("a", b"body") == request_digest("a", b"body")
    assert request_digest("a", b"body") != request_digest("b", b"body")
    assert request_digest("a", b"body") != request_digest("a", b"other")
