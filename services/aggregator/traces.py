"""Stored runs as the API shows them: a filtered list, newest first with a cursor, and one trace's spans."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.decode import time_of
from services.aggregator.query import iso
from services.common.errors import Invalid, NotFound

_STATUS = {0: "unset", 1: "ok", 2: "error"}
_STATUS_CODES = {v: k for k, v in _STATUS.items()}
_DATA_TYPES = {0: "numeric", 1: "numeric", 2: "boolean", 3: "categorical"}
_SOURCES = {0: "api", 1: "api", 2: "annotation", 3: "eval"}

_LIST_COLUMNS = (
    "trace_id, span_id, parent_span_id, start_ns, end_ns, is_generation, name, kind, project_name, app_version, "
    "prompt_name, prompt_version, prompt_label, model, latency_ms, ttft_ms, input_tokens, output_tokens, "
    "total_tokens, cached_input_tokens, cost, status, error_message, session_id, user_id"
)


@dataclass(frozen=True)
class RunFilters:
    app_version: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    model: str | None = None
    kind: str | None = None
    status: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def _run(r: asyncpg.Record, full: bool = False) -> dict[str, Any]:
    body = {
        "trace_id": r["trace_id"].hex(),
        "span_id": r["span_id"].hex(),
        "parent_span_id": r["parent_span_id"].hex() or None,
        "name": r["name"],
        "kind": r["kind"],
        "is_generation": r["is_generation"],
        "project_name": r["project_name"],
        "app_version": r["app_version"],
        "prompt_name": r["prompt_name"] or None,
        "prompt_version": r["prompt_version"] or None,
        "prompt_label": r["prompt_label"] or None,
        "model": r["model"] or None,
        "start_time": iso(r["start_ns"]),
        "end_time": iso(r["end_ns"]),
        "latency_ms": r["latency_ms"],
        "ttft_ms": r["ttft_ms"],
        "input_tokens": r["input_tokens"],
        "output_tokens": r["output_tokens"],
        "total_tokens": r["total_tokens"],
        "cached_input_tokens": r["cached_input_tokens"],
        "cost": r["cost"],
        "status": _STATUS.get(r["status"], "unset"),
        "error_message": r["error_message"] or None,
        "session_id": r["session_id"] or None,
        "user_id": r["user_id"] or None,
    }
    if full:
        body.update(input=r["input"], output=r["output"], attributes_json=r["attributes_json"])
    return body


def _cursor(r: asyncpg.Record) -> str:
    raw = f"{r['start_ns']}:{r['trace_id'].hex()}:{r['span_id'].hex()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, bytes, bytes]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, trace, span = raw.split(":")
        return time_of(int(start)), bytes.fromhex(trace), bytes.fromhex(span)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this API gave out") from None


async def list_runs(
    pool: asyncpg.Pool, project: uuid.UUID, filters: RunFilters, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Runs matching the filters, newest first; `next_cursor` continues after the last one."""
    where = ["project_id = $1"]
    args: list[Any] = [project]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    if filters.status is not None:
        if filters.status not in _STATUS_CODES:
            raise Invalid("status must be ok, error or unset")
        add("status = {}", _STATUS_CODES[filters.status])
    for column in ("app_version", "prompt_name", "prompt_version", "model", "kind"):
        value = getattr(filters, column)
        if value is not None:
            add(f"{column} = {{}}", value)
    if filters.start is not None:
        add("start_time >= {}", filters.start)
    if filters.end is not None:
        add("start_time < {}", filters.end)
    if cursor:
        start, trace, span = _after(cursor)
        args.extend([start, trace, span])
        n = len(args)
        where.append(f"(start_time, trace_id, span_id) < (${n - 2}, ${n - 1}, ${n})")
    args.append(limit + 1)
    rows = await pool.fetch(
        f"SELECT {_LIST_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
        f"ORDER BY start_time DESC, trace_id DESC, span_id DESC LIMIT ${len(args)}",
        *args,
    )
    page = rows[:limit]
    return {"runs": [_run(r) for r in page], "next_cursor": _cursor(page[-1]) if len(rows) > limit else None}


def _score(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["score_id"],
        "name": r["name"],
        "value": None if r["is_error"] or r["data_type"] == 3 else r["value"],
        "string_value": r["string_value"] or None,
        "data_type": _DATA_TYPES.get(r["data_type"], "numeric"),
        "source": _SOURCES.get(r["source"], "api"),
        "comment": r["comment"] or None,
        "evaluator_name": r["evaluator_name"] or None,
        "is_error": r["is_error"],
        "counted": r["applied"],
        "counts_toward_span_id": r["target_span_id"].hex() if r["target_span_id"] else None,
        "created_at": r["created_at"].isoformat(),
    }


def parse_trace_id(raw: str) -> bytes:
    try:
        trace = bytes.fromhex(raw)
    except ValueError:
        trace = b""
    if len(trace) != 16:
        raise Invalid("trace_id must be 32 hexadecimal characters")
    return trace


async def trace_view(pool: asyncpg.Pool, project: uuid.UUID, trace_id: str) -> dict[str, Any]:
    """The trace's spans in start order, each with its scores, and the scores of the whole trace."""
    trace = parse_trace_id(trace_id)
    async with pool.acquire() as conn:
        spans = await conn.fetch(
            f"SELECT {_LIST_COLUMNS}, input, output, attributes_json FROM runs "
            "WHERE project_id = $1 AND trace_id = $2 ORDER BY start_ns, span_id",
            project,
            trace,
        )
        scores = await conn.fetch(
            "SELECT * FROM scores WHERE project_id = $1 AND trace_id = $2 ORDER BY created_at, score_id",
            project,
            trace,
        )
    if not spans and not scores:
        raise NotFound(f"trace {trace_id} not found")
    by_span: dict[bytes, list[dict[str, Any]]] = {}
    for s in scores:
        by_span.setdefault(s["span_id"], []).append(_score(s))
    return {
        "trace_id": trace.hex(),
        "spans": [{**_run(r, full=True), "scores": by_span.get(r["span_id"], [])} for r in spans],
        "scores": by_span.get(b"", []),
    }


async def pending_scores(pool: asyncpg.Pool, project: uuid.UUID, older_than_seconds: float) -> dict[str, Any]:
    """Scores still waiting for the span they name, oldest first: reported, never dropped."""
    rows = await pool.fetch(
        "SELECT * FROM scores WHERE project_id = $1 AND NOT applied "
        "AND received_at <= now() - make_interval(secs => $2) ORDER BY received_at LIMIT 1000",
        project,
        older_than_seconds,
    )
    return {
        "scores": [
            {
                **_score(r),
                "trace_id": r["trace_id"].hex(),
                "span_id": r["span_id"].hex() or None,
                "waiting_since": r["received_at"].isoformat(),
            }
            for r in rows
        ]
    }
