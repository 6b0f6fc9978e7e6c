"""Decode bus messages into what Postgres and rollups take: plain functions, no I/O.

A SpanBatch becomes binary COPY tuples for `runs` and one compact record per stored span (the
columns rollups and run assembly read), never a Python object per span. The C decoder (`_spans.c`) does this for
every message it is sure of; `decode_spans_reference`, built on the generated protobuf classes,
is its twin: it gives the same bytes (a differential test proves it), decodes whatever the C
decoder declines (malformed bytes: it raises the error), and runs alone where C was not built.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from vane.v1 import bus_pb2

try:
    from services.aggregator import _spans
except ImportError:  # built without a C compiler: the reference decoder does all of it
    _spans = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Kinds that are never a model generation, even when they carry a model name (an embedding call).
_NOT_GENERATIONS = ("embedding", "retriever", "reranker", "tool", "guardrail", "evaluator", "agent", "chain")

# Columns of `runs` in the order of the COPY tuples.
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
    "input_cost",
    "output_cost",
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

ScoreRow = tuple[object, ...]

# Binary COPY framing around the tuples of one statement.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"

# One stored span as rollups and run assembly read it; flags say what it is and which optional values
# it carried. `key` indexes the message's keys (project, project name, app version, prompt name,
# prompt version, model); generations are the records flagged IS_GENERATION.
HAS_TTFT, HAS_INPUT, HAS_OUTPUT, HAS_COST, IS_ERROR = 1, 2, 4, 8, 16
IS_GENERATION, IS_ROOT, HAS_INPUT_COST, HAS_OUTPUT_COST = 32, 64, 128, 256
SPAN_DTYPE = np.dtype(
    {
        "names": [
            "key",
            "flags",
            "start_ns",
            "end_ns",
            "latency_ms",
            "ttft_ms",
            "input_tokens",
            "output_tokens",
            "cost",
            "input_cost",
            "output_cost",
        ],
        "formats": ["<i4", "<u2", "<i8", "<i8", "<f8", "<f8", "<i8", "<i8", "<f8", "<f8", "<f8"],
        "offsets": [0, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72],
        "itemsize": 80,
    }
)

# Why a span is left out, by the code both decoders give: Postgres would refuse the last two, and a
# refused row would fail its whole batch on every redelivery.
SKIP_REASONS = (
    "trace_id must be 16 bytes and span_id 8",
    "no project",
    "status does not fit a smallint",
    "a text field holds a NUL character",
)
_PG_EPOCH_US = 946684800000000
_US_PER_DAY = 86_400_000_000
_STATUS_ERROR = 2

# The fields each decoder reads, in the C decoder's slot order; their numbers come from the descriptor.
SPAN_FIELDS = (
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "project_name",
    "app_version",
    "project_type",
    "prompt_name",
    "prompt_version",
    "model",
    "start_time_unix_nano",
    "end_time_unix_nano",
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
    "eval_tags_json",
    "attributes_json",
    "prompt_label",
    "metadata_json",
    "input_cost",
    "output_cost",
)
BATCH_FIELDS = ("schema_version", "project_id", "spans", "received_unix_nano")
_TEXT_FIELDS = (
    "name",
    "kind",
    "project_name",
    "app_version",
    "project_type",
    "prompt_name",
    "prompt_label",
    "model",
    "error_message",
    "session_id",
    "user_id",
    "input",
    "output",
    "attributes_json",
    "metadata_json",
)
_F = FieldDescriptor
# The wire reading _spans.c does for each slot (every other field is a string): a changed type in
# bus.proto turns the C decoder off rather than letting it misread.
_C_TYPES = {
    "trace_id": _F.TYPE_BYTES,
    "span_id": _F.TYPE_BYTES,
    "parent_span_id": _F.TYPE_BYTES,
    "prompt_version": _F.TYPE_INT32,
    "status": _F.TYPE_ENUM,
    "ttft_ms": _F.TYPE_DOUBLE,
    "cost": _F.TYPE_DOUBLE,
    "input_cost": _F.TYPE_DOUBLE,
    "output_cost": _F.TYPE_DOUBLE,
    "start_time_unix_nano": _F.TYPE_INT64,
    "end_time_unix_nano": _F.TYPE_INT64,
    "input_tokens": _F.TYPE_INT64,
    "output_tokens": _F.TYPE_INT64,
    "total_tokens": _F.TYPE_INT64,
    "cached_input_tokens": _F.TYPE_INT64,
}
_BATCH_TYPES = {
    "schema_version": _F.TYPE_INT32,
    "project_id": _F.TYPE_STRING,
    "spans": _F.TYPE_MESSAGE,
    "received_unix_nano": _F.TYPE_INT64,
}


def _layout() -> tuple[int, ...] | None:
    """Field numbers for the C decoder, or None if bus.proto no longer has the types it reads."""
    span = bus_pb2.CanonicalSpan.DESCRIPTOR.fields_by_name
    batch = bus_pb2.SpanBatch.DESCRIPTOR.fields_by_name
    if set(span) != set(SPAN_FIELDS) or set(batch) != set(BATCH_FIELDS):
        return None  # a new field: protobuf would check its UTF-8, the C decoder would skip it unread
    for name in SPAN_FIELDS:
        if span[name].type != _C_TYPES.get(name, _F.TYPE_STRING) or span[name].is_repeated:
            return None
    if any(batch[name].type != kind for name, kind in _BATCH_TYPES.items()):
        return None
    return tuple(span[n].number for n in SPAN_FIELDS) + tuple(batch[n].number for n in BATCH_FIELDS)


_LAYOUT = _layout() if _spans is not None else None
_NOT_GENERATION_BYTES = tuple(k.encode() for k in _NOT_GENERATIONS)
ACCELERATED = _LAYOUT is not None


class Undecodable(ValueError):
    """A message that is not a batch this build knows: it goes to the dead letters."""


# project, project name, app version, prompt name, prompt version, model
RollupKeyParts = tuple[uuid.UUID, str, str, str, int, str]


@dataclass(frozen=True)
class DecodedSpans:
    """One SpanBatch's stored rows, as COPY tuples and span records."""

    count: int  # rows
    rows: bytes  # binary COPY tuples of `runs` in RUN_COLUMNS order, without header and trailer
    spans: bytes  # SPAN_DTYPE records, one per row
    keys: list[RollupKeyParts]  # a span record's `key` indexes this list
    traces: bytes  # each row's 16-byte trace id
    row_projects: bytes  # each row's project, as an int32 index into `projects`
    projects: list[uuid.UUID]
    days: list[int]  # distinct days (since 1970) of the rows' start times
    skipped: list[str]  # why spans of the batch were left out


def time_of(unix_nano: int) -> datetime:
    return EPOCH + timedelta(microseconds=unix_nano // 1000)


def project_of(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Undecodable(f"project_id {raw!r} is not a UUID") from None


def _skipped(name: str, code: int) -> str:
    return f"span {name!r}: {SKIP_REASONS[code]}"


def decode_spans(data: bytes) -> DecodedSpans:
    """The rows of a SpanBatch; spans that cannot be stored are skipped with the reason."""
    if _LAYOUT is not None:
        raw = _spans.decode_span_batch(data, _LAYOUT, SCHEMA_VERSION, _NOT_GENERATION_BYTES, project_of)
        if raw is not None:
            count, rows, spans, keys, traces, row_projects, projects, days, skipped = raw
            reasons = [_skipped(name, code) for name, code in skipped]
            return DecodedSpans(count, rows, spans, keys, traces, row_projects, projects, days, reasons)
    return decode_spans_reference(data)


def is_generation(span: bus_pb2.CanonicalSpan) -> bool:
    """A model call: kind llm, or linked to a prompt version, or a model on a span of no other kind."""
    if span.kind == "llm" or span.prompt_version > 0:
        return True
    return bool(span.model) and span.kind not in _NOT_GENERATIONS


def _skip_code(span: bus_pb2.CanonicalSpan) -> int | None:
    """Why a span with a project cannot be stored, or None."""
    if not -32768 <= span.status <= 32767:
        return 2
    if any("\x00" in getattr(span, name) for name in _TEXT_FIELDS):
        return 3
    return None


_I = struct.Struct(">i")
_NULL = _I.pack(-1)


def _bytes_field(value: bytes) -> bytes:
    return _I.pack(len(value)) + value


def _optional(span: bus_pb2.CanonicalSpan, name: str, fmt: str) -> bytes:
    return struct.pack(">i" + fmt, 8, getattr(span, name)) if span.HasField(name) else _NULL  # type: ignore[arg-type]


def copy_tuple(span: bus_pb2.CanonicalSpan, project: uuid.UUID, start: int, end: int, generation: bool) -> bytes:
    """The binary COPY tuple of one span (RUN_COLUMNS), as _spans.c writes it."""
    text = [_bytes_field(getattr(span, name).encode()) for name in _TEXT_FIELDS]
    name, kind, project_name, app, project_type, prompt, label, model, *rest = text
    return b"".join(
        [
            struct.pack(">hi16siq", len(RUN_COLUMNS), 16, project.bytes, 8, start // 1000 - _PG_EPOCH_US),
            _bytes_field(span.trace_id),
            _bytes_field(span.span_id),
            _bytes_field(span.parent_span_id),
            struct.pack(">iqiqib", 8, start, 8, end, 1, generation),
            name,
            kind,
            project_name,
            app,
            project_type,
            prompt,
            struct.pack(">ii", 4, span.prompt_version),
            label,
            model,
            struct.pack(">id", 8, (end - start) / 1e6),
            _optional(span, "ttft_ms", "d"),
            _optional(span, "input_tokens", "q"),
            _optional(span, "output_tokens", "q"),
            _optional(span, "total_tokens", "q"),
            _optional(span, "cached_input_tokens", "q"),
            _optional(span, "cost", "d"),
            _optional(span, "input_cost", "d"),
            _optional(span, "output_cost", "d"),
            struct.pack(">ih", 2, span.status),
            *rest,
        ]
    )


def _span_record(span: bus_pb2.CanonicalSpan, key: int, start: int, end: int, generation: bool) -> tuple[object, ...]:
    has = span.HasField
    flags = (
        (HAS_TTFT if has("ttft_ms") else 0)
        | (HAS_INPUT if has("input_tokens") else 0)
        | (HAS_OUTPUT if has("output_tokens") else 0)
        | (HAS_COST if has("cost") else 0)
        | (IS_ERROR if span.status == _STATUS_ERROR else 0)
        | (IS_GENERATION if generation else 0)
        | (IS_ROOT if not span.parent_span_id else 0)
        | (HAS_INPUT_COST if has("input_cost") else 0)
        | (HAS_OUTPUT_COST if has("output_cost") else 0)
    )
    return (
        key,
        flags,
        start,
        end,
        (end - start) / 1e6,
        span.ttft_ms,
        span.input_tokens,
        span.output_tokens,
        span.cost,
        span.input_cost,
        span.output_cost,
    )


def decode_spans_reference(data: bytes) -> DecodedSpans:
    """The C decoder's twin over the generated protobuf classes: slower, and the judge of bad input."""
    batch = bus_pb2.SpanBatch()
    try:
        batch.ParseFromString(data)
    except Exception as exc:
        raise Undecodable(f"not a SpanBatch: {exc}") from None
    if batch.schema_version != SCHEMA_VERSION:
        raise Undecodable(f"SpanBatch schema_version {batch.schema_version} is not {SCHEMA_VERSION}")
    default_project = project_of(batch.project_id) if batch.project_id else None
    seen: dict[str, uuid.UUID] = {}
    rows: list[bytes] = []
    records: list[tuple[object, ...]] = []
    keys: dict[RollupKeyParts, int] = {}
    traces: list[bytes] = []
    row_projects: list[int] = []
    projects: dict[uuid.UUID, int] = {}
    days: dict[int, None] = {}
    skipped: list[str] = []
    for span in batch.spans:
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            skipped.append(_skipped(span.name, 0))
            continue
        if span.project_id:
            project = seen.get(span.project_id) or seen.setdefault(span.project_id, project_of(span.project_id))
        elif default_project is not None:
            project = default_project
        else:
            skipped.append(_skipped(span.name, 1))
            continue
        start = span.start_time_unix_nano or batch.received_unix_nano
        end = max(span.end_time_unix_nano, start)
        if (code := _skip_code(span)) is not None:
            skipped.append(_skipped(span.name, code))
            continue
        generation = is_generation(span)
        rows.append(copy_tuple(span, project, start, end, generation))
        traces.append(span.trace_id)
        row_projects.append(projects.setdefault(project, len(projects)))
        days.setdefault(start // 1000 // _US_PER_DAY)
        key = (project, span.project_name, span.app_version, span.prompt_name, span.prompt_version, span.model)
        records.append(_span_record(span, keys.setdefault(key, len(keys)), start, end, generation))
    spans = np.zeros(len(records), dtype=SPAN_DTYPE)
    if records:
        columns = list(zip(*records, strict=True))
        for name, column in zip(SPAN_DTYPE.names or (), columns, strict=True):
            spans[name] = column
    return DecodedSpans(
        len(rows),
        b"".join(rows),
        spans.tobytes(),
        list(keys),
        b"".join(traces),
        np.array(row_projects, dtype="<i4").tobytes(),
        list(projects),
        list(days),
        skipped,
    )


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
                project_of(s.project_id),
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
