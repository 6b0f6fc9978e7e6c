"""Decode bus messages (SpanBatch, ScoreBatch) into rows for Postgres: plain functions, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vane.v1 import bus_pb2

SCHEMA_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Kinds that are never a model generation, even when they carry a model name (an embedding call).
_NOT_GENERATIONS = frozenset({"embedding", "retriever", "reranker", "tool", "guardrail", "evaluator", "agent", "chain"})

# Columns of `runs` in the order decode produces them (COPY writes them by name).
RUN_COLUMNS = (
    "project_id",
    "start_time",
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_ns",
    "end_ns",
    "is_generation",
    "name",
    "kind",
    "project_name",
    "app_version",
    "project_type",
    "prompt_name",
    "prompt_version",
    "prompt_label",
    "model",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cost",
    "status",
    "error_message",
    "session_id",
    "user_id",
    "input",
    "output",
    "attributes_json",
    "metadata_json",
)

SCORE_COLUMNS = (
    "project_id",
    "score_id",
    "trace_id",
    "span_id",
    "name",
    "value",
    "string_value",
    "data_type",
    "source",
    "comment",
    "evaluator_name",
    "evaluator_version",
    "is_error",
    "eval_cost",
    "created_at",
)

RunRow = tuple[object, ...]
ScoreRow = tuple[object, ...]


class Undecodable(ValueError):
    """A message that is not a batch this build knows: it goes to the dead letters."""


@dataclass(frozen=True)
class DecodedSpans:
    rows: list[RunRow]
    skipped: list[str]  # why spans of the batch were left out


def time_of(unix_nano: int) -> datetime:
    return EPOCH + timedelta(microseconds=unix_nano // 1000)


def is_generation(span: bus_pb2.CanonicalSpan) -> bool:
    """A model call: kind llm, or linked to a prompt version, or a model on a span of no other kind."""
    if span.kind == "llm" or span.prompt_version > 0:
        return True
    return bool(span.model) and span.kind not in _NOT_GENERATIONS


def run_row(span: bus_pb2.CanonicalSpan, project_id: uuid.UUID, received_ns: int) -> RunRow:
    start = span.start_time_unix_nano or received_ns
    end = max(span.end_time_unix_nano, start)
    has = span.HasField  # optional fields are None when absent, not 0 (inlined: this runs once per span)
    return (
        project_id,
        EPOCH + timedelta(microseconds=start // 1000),
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        start,
        end,
        is_generation(span),
        span.name,
        span.kind,
        span.project_name,
        span.app_version,
        span.project_type,
        span.prompt_name,
        span.prompt_version,
        span.prompt_label,
        span.model,
        (end - start) / 1e6,
        span.ttft_ms if has("ttft_ms") else None,
        span.input_tokens if has("input_tokens") else None,
        span.output_tokens if has("output_tokens") else None,
        span.total_tokens if has("total_tokens") else None,
        span.cached_input_tokens if has("cached_input_tokens") else None,
        span.cost if has("cost") else None,
        int(span.status),
        span.error_message,
        span.session_id,
        span.user_id,
        span.input,
        span.output,
        span.attributes_json,
        span.metadata_json,
    )


def _project(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Undecodable(f"project_id {raw!r} is not a UUID") from None


def decode_spans(data: bytes) -> DecodedSpans:
    """The rows of a SpanBatch; spans without valid ids are skipped with the reason."""
    batch = bus_pb2.SpanBatch()
    try:
        batch.ParseFromString(data)
    except Exception as exc:
        raise Undecodable(f"not a SpanBatch: {exc}") from None
    if batch.schema_version != SCHEMA_VERSION:
        raise Undecodable(f"SpanBatch schema_version {batch.schema_version} is not {SCHEMA_VERSION}")
    default_project = _project(batch.project_id) if batch.project_id else None
    projects: dict[str, uuid.UUID] = {}
    rows: list[RunRow] = []
    skipped: list[str] = []
    for span in batch.spans:
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            skipped.append(f"span {span.name!r}: trace_id must be 16 bytes and span_id 8")
            continue
        if span.project_id:
            project = projects.get(span.project_id) or projects.setdefault(span.project_id, _project(span.project_id))
        elif default_project is not None:
            project = default_project
        else:
            skipped.append(f"span {span.name!r}: no project")
            continue
        rows.append(run_row(span, project, batch.received_unix_nano))
    return DecodedSpans(rows, skipped)


def decode_scores(data: bytes, now_ns: int) -> list[ScoreRow]:
    """The rows of a ScoreBatch; a score without an id, trace or name makes the batch undecodable."""
    batch = bus_pb2.ScoreBatch()
    try:
        batch.ParseFromString(data)
    except Exception as exc:
        raise Undecodable(f"not a ScoreBatch: {exc}") from None
    if batch.schema_version != SCHEMA_VERSION:
        raise Undecodable(f"ScoreBatch schema_version {batch.schema_version} is not {SCHEMA_VERSION}")
    rows: list[ScoreRow] = []
    for s in batch.scores:
        if not s.score_id or len(s.trace_id) != 16 or not s.name or len(s.span_id) not in (0, 8):
            raise Undecodable(f"score {s.score_id!r}: needs score_id, name, a 16-byte trace_id, an 8-byte span_id")
        rows.append(
            (
                _project(s.project_id),
                s.score_id,
                s.trace_id,
                s.span_id,
                s.name,
                s.value,
                s.string_value,
                int(s.data_type),
                int(s.source),
                s.comment,
                s.evaluator_name,
                s.evaluator_version,
                s.is_error,
                s.eval_cost if s.HasField("eval_cost") else None,
                time_of(s.created_unix_nano or now_ns),
            )
        )
    return rows
