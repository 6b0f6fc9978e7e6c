"""`GET /api/v1/traces`: runs as traces, newest first, each with its run figures (latency, cost,
tokens, status, span count) and the scores given to the trace or its root span."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.query import iso, ns_of
from services.aggregator.rollup import PICO
from services.aggregator.store import Conn
from services.common.errors import Invalid


@dataclass(frozen=True)
class TraceFilters:
    app_version: str | None = None
    project_name: str | None = None
    status: str | None = None  # ok or error
    start: datetime | None = None
    end: datetime | None = None


def _cursor(r: asyncpg.Record) -> str:
    raw = f"{r['start_ns']}:{r['trace_id'].hex()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[int, bytes]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, trace = raw.split(":")
        return int(start), bytes.fromhex(trace)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this API gave out") from None


def _run(r: asyncpg.Record, scores: dict[str, Any]) -> dict[str, Any]:
    rooted = r["root_start_ns"] is not None and r["root_end_ns"] is not None
    start, end = (r["root_start_ns"], r["root_end_ns"]) if rooted else (r["start_ns"], r["end_ns"])
    return {
        "trace_id": r["trace_id"].hex(),
        "project_name": r["project_name"],
        "app_version": r["app_version"],
        "start_time": iso(start),
        "end_time": iso(end),
        "latency_ms": (end - start) / 1e6,
        "cost": r["cost"] / PICO,
        "input_tokens": r["input_tokens"],
        "output_tokens": r["output_tokens"],
        "total_tokens": r["input_tokens"] + r["output_tokens"],
        "status": "error" if r["error_count"] else "ok",
        "span_count": r["span_count"],
        "error_count": r["error_count"],
        "has_root": rooted,
        "counted": r["counted_at"] is not None,
        "scores": scores,
    }


async def list_traces(
    pool: asyncpg.Pool, project: uuid.UUID, filters: TraceFilters, limit: int, cursor: str | None
) -> dict[str, Any]:
    where = ["project_id = $1"]
    args: list[Any] = [project]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    if filters.status not in (None, "ok", "error"):
        raise Invalid("status must be ok or error")
    if filters.status is not None:
        where.append("error_count > 0" if filters.status == "error" else "error_count = 0")
    if filters.app_version is not None:
        add("app_version = {}", filters.app_version)
    if filters.project_name is not None:
        add("project_name = {}", filters.project_name)
    if filters.start is not None:
        add("start_ns >= {}", ns_of(filters.start))
    if filters.end is not None:
        add("start_ns < {}", ns_of(filters.end))
    if cursor:
        start, trace = _after(cursor)
        args.extend([start, trace])
        where.append(f"(start_ns, trace_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM trace_runs WHERE {' AND '.join(where)} "
            f"ORDER BY start_ns DESC, trace_id DESC LIMIT ${len(args)}",
            *args,
        )
        page = rows[:limit]
        scores = await _scores(conn, project, [r["trace_id"] for r in page])
    return {
        "traces": [_run(r, scores.get(r["trace_id"], {})) for r in page],
        "next_cursor": _cursor(page[-1]) if len(rows) > limit else None,
    }


async def _scores(conn: Conn, project: uuid.UUID, traces: list[bytes]) -> dict[bytes, dict[str, Any]]:
    """Each trace's scores by name (the latest of a name): those of the whole trace or its root span."""
    if not traces:
        return {}
    rows = await conn.fetch(
        "SELECT s.trace_id, s.name, s.value, s.string_value, s.data_type FROM scores s "
        "WHERE s.project_id = $1 AND s.trace_id = ANY($2::bytea[]) AND NOT s.is_error AND (s.span_id = '' "
        "OR s.span_id IN (SELECT r.span_id FROM runs r WHERE r.project_id = $1 AND r.trace_id = s.trace_id "
        "AND r.parent_span_id = '')) ORDER BY s.created_at",
        project,
        traces,
    )
    out: dict[bytes, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(r["trace_id"], {})[r["name"]] = r["string_value"] if r["data_type"] == 3 else r["value"]
    return out
