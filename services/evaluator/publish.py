"""Recorded evaluations → scores on the scores stream (source eval), with idempotent message ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from vane.v1 import bus_pb2

from services.common.bus import Bus
from services.evaluator.records import Evaluation

SCHEMA_VERSION = 1
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


async def publish_scores(bus: Bus, evaluations: Sequence[Evaluation]) -> None:
    """Publish each evaluation as its own message with Nats-Msg-Id = score_id, concurrently, and return
    once JetStream has stored them all: a republished score within the dedupe window is stored once."""

    async def one(evaluation: Evaluation) -> None:
        batch = bus_pb2.ScoreBatch(schema_version=SCHEMA_VERSION, scores=[to_score(evaluation)])
        await bus.publish(bus.topology.scores_subject, batch.SerializeToString(), msg_id=str(evaluation.score_id))

    await asyncio.gather(*(one(e) for e in evaluations))
