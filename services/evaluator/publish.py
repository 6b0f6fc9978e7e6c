"""Recorded evaluations → scores on the scores stream (source eval), with idempotent message ids."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from vane.v1 import bus_pb2

from services.common.bus import Bus
from services.evaluator.records import Evaluation
from services.evaluator.selection import SCORE_NAMESPACE

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 512 * 1024  # well under NATS's default 1 MiB payload limit
_DATA_TYPES = {
    "numeric": bus_pb2.SCORE_DATA_TYPE_NUMERIC,
    "boolean": bus_pb2.SCORE_DATA_TYPE_BOOLEAN,
    "categorical": bus_pb2.SCORE_DATA_TYPE_CATEGORICAL,
}


def to_score(evaluation: Evaluation) -> bus_pb2.Score:
    """The score of an evaluation; a failed one is a score with is_error and the reason, never a value."""
    score = bus_pb2.Score(
        project_id=str(evaluation.project_id),
        score_id=str(evaluation.score_id),
        trace_id=evaluation.trace_id,
        span_id=evaluation.span_id,
        name=evaluation.name,
        value=evaluation.value if evaluation.value is not None else 0.0,
        string_value=evaluation.string_value,
        data_type=_DATA_TYPES.get(evaluation.data_type, bus_pb2.SCORE_DATA_TYPE_NUMERIC),
        source=bus_pb2.SCORE_SOURCE_EVAL,
        comment=evaluation.comment,
        evaluator_name=evaluation.evaluator,
        evaluator_version=evaluation.evaluator_version,
        created_unix_nano=int(evaluation.created_at.timestamp() * 1e9),
        is_error=evaluation.status == "error",
    )
    if evaluation.eval_cost is not None:
        score.eval_cost = evaluation.eval_cost
    return score


def batches(evaluations: Sequence[Evaluation]) -> list[tuple[str, bytes]]:
    """ScoreBatch messages of at most MAX_MESSAGE_BYTES, each with its Nats-Msg-Id: for one score its
    score_id, else a uuid5 of the batch's score ids. The same evaluations always give the same messages."""
    ordered = sorted(evaluations, key=lambda e: str(e.score_id))
    out: list[tuple[str, bytes]] = []
    chunk: list[bus_pb2.Score] = []
    size = 0
    for score in map(to_score, ordered):
        grows = score.ByteSize() + 8
        if chunk and size + grows > MAX_MESSAGE_BYTES:
            out.append(_message(chunk))
            chunk, size = [], 0
        chunk.append(score)
        size += grows
    if chunk:
        out.append(_message(chunk))
    return out


def _message(scores: list[bus_pb2.Score]) -> tuple[str, bytes]:
    ids = [s.score_id for s in scores]
    msg_id = ids[0] if len(ids) == 1 else str(uuid.uuid5(SCORE_NAMESPACE, ",".join(ids)))
    return msg_id, bus_pb2.ScoreBatch(schema_version=SCHEMA_VERSION, scores=scores).SerializeToString()


async def publish_scores(bus: Bus, evaluations: Sequence[Evaluation]) -> None:
    """Publish the evaluations and return once JetStream has stored them. Publishing the same set again
    (a redelivered span) sends the same message ids, which JetStream stores once within its window;
    the aggregator keys scores by score_id beyond it."""
    await asyncio.gather(
        *(bus.publish(bus.topology.scores_subject, data, msg_id=msg_id) for msg_id, data in batches(evaluations))
    )
