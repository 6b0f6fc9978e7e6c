"""Postgres writes of the aggregator: runs, scores and rollup deltas, all inside the caller's transaction.

Idempotence comes from keys, not from bookkeeping: runs are inserted ON CONFLICT DO NOTHING on
(project, start, trace, span) and scores on (project, score_id), and only the rows actually
inserted produce rollup deltas, in the same transaction. A batch redelivered after a crash, or
handed to another replica, therefore adds nothing twice; an uncommitted batch added nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import numpy as np
from asyncpg.pool import PoolConnectionProxy

from services.aggregator.decode import (
    COPY_HEADER,
    COPY_TRAILER,
    HAS_COST,
    HAS_INPUT,
    HAS_INPUT_COST,
    HAS_OUTPUT,
    HAS_OUTPUT_COST,
    HAS_TTFT,
    IS_ERROR,
    IS_GENERATION,
    IS_ROOT,
    RUN_COLUMNS,
    SCORE_COLUMNS,
    SPAN_DTYPE,
    DecodedSpans,
    ScoreRow,
)
from services.aggregator.rollup import AppliedScore, RollupKey
from services.aggregator.scores import TraceSpan, settle
from services.common.logs import get_logger

log = get_logger(component="aggregator.store")

# A connection, whether from a pool or on its own.
Conn = asyncpg.Connection | PoolConnectionProxy

_CATEGORICAL = 3  # ScoreDataType.SCORE_DATA_TYPE_CATEGORICAL


@dataclass(frozen=True)
class PendingScore:
    project_id: uuid.UUID
    score_id: str
    trace_id: bytes
    span_id: bytes
    name: str
    value: float
    numeric: bool
    is_error: bool
    category: str = ""  # a categorical score's value


def _partition_name(day: date) -> str:
    return f"runs_{day:%Y%m%d}"


class Partitions:
    """Daily partitions of `runs`: made ahead for the coming days, and on demand for any other day."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def load(self, pool: asyncpg.Pool) -> None:
        names = await pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'runs'::regclass"
        )
        for (name,) in names:
            try:
                self._known.add(datetime.strptime(name, "runs_%Y%m%d").date())
            except ValueError:
                continue

    async def ensure(self, pool: asyncpg.Pool, days: Iterable[date]) -> None:
        for day in sorted(set(days) - self._known):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            sql = (
                f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF runs "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
            )
            # another replica may make it at the same moment
            with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                await pool.execute(sql)
            self._known.add(day)
            log.info("partition_ready", partition=_partition_name(day))

    def forget(self, days: Iterable[date]) -> None:
        """Days whose partitions were dropped (retention): made again should a late run name one."""
        self._known.difference_update(days)

    async def ahead(self, pool: asyncpg.Pool, days: int = 3) -> None:
        today = datetime.now(UTC).date()
        await self.ensure(pool, (today + timedelta(days=d) for d in range(-1, days)))


def _day(days_since_epoch: int) -> date:
    return date(1970, 1, 1) + timedelta(days=days_since_epoch)


CellKey = tuple[uuid.UUID, RollupKey]


@dataclass(frozen=True)
class StoredRuns:
    """Runs stored by one transaction: a record of each, and the traces they belong to."""

    count: int
    projects: set[uuid.UUID]
    spans: np.ndarray  # SPAN_DTYPE, one per stored row; `key` indexes `keys`
    trace_ids: bytes  # each stored row's 16-byte trace id, in `spans` order
    keys: list[CellKey]
    traces: Callable[[], dict[uuid.UUID, set[bytes]]]  # by project: asked only when scores wait

    @property
    def generations(self) -> np.ndarray:
        return self.spans[(self.spans["flags"] & IS_GENERATION) != 0]


class RunBatch:
    """The span batches of one fetch, merged: one COPY payload and one array of span records."""

    def __init__(self, decoded: Sequence[DecodedSpans]) -> None:
        self.parts = [d for d in decoded if d.count]
        self.count = sum(d.count for d in self.parts)
        # a memoryview: asyncpg takes a buffer as the COPY's data (bytes it would take for a file name)
        self.copy = memoryview(b"".join([COPY_HEADER, *(d.rows for d in self.parts), COPY_TRAILER]))
        self.days = {_day(day) for d in self.parts for day in d.days}
        index: dict[CellKey, int] = {}
        records = []
        for d in self.parts:
            # each message numbers its own keys: renumber them into the batch's
            local = np.array(
                [index.setdefault((p, RollupKey(a, v, n, pv, m)), len(index)) for p, a, v, n, pv, m in d.keys] or [0],
                dtype=np.int32,
            )
            part = np.frombuffer(d.spans, dtype=SPAN_DTYPE).copy()
            part["key"] = local[part["key"]]
            records.append(part)
        self.spans = np.concatenate(records) if records else np.zeros(0, dtype=SPAN_DTYPE)
        self.keys = list(index)

    def traces(self) -> dict[uuid.UUID, set[bytes]]:
        out: dict[uuid.UUID, set[bytes]] = defaultdict(set)
        for d in self.parts:
            owners = np.frombuffer(d.row_projects, dtype="<i4")
            for i, owner in enumerate(owners.tolist()):
                out[d.projects[owner]].add(d.traces[16 * i : 16 * i + 16])
        return out

    def stored(self) -> StoredRuns:
        projects = {p for d in self.parts for p in d.projects}
        trace_ids = b"".join(d.traces for d in self.parts)
        return StoredRuns(self.count, projects, self.spans, trace_ids, self.keys, self.traces)


_STAGE_RUNS = "CREATE TEMP TABLE IF NOT EXISTS runs_stage (LIKE runs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_RETURNED = (
    "project_id",
    "trace_id",
    "parent_span_id",
    "is_generation",
    "start_ns",
    "end_ns",
    "project_name",
    "app_version",
    "prompt_name",
    "prompt_version",
    "model",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "input_cost",
    "output_cost",
    "status",
)
_INSERT_RUNS = f"""
INSERT INTO runs ({", ".join(RUN_COLUMNS)}) SELECT {", ".join(RUN_COLUMNS)} FROM runs_stage
ON CONFLICT DO NOTHING
RETURNING {", ".join(_RETURNED)}
"""
# (column, the flag saying the span carried it): the optional values of a span record
_PRESENCE = (
    ("ttft_ms", HAS_TTFT),
    ("input_tokens", HAS_INPUT),
    ("output_tokens", HAS_OUTPUT),
    ("cost", HAS_COST),
    ("input_cost", HAS_INPUT_COST),
    ("output_cost", HAS_OUTPUT_COST),
)


def _stored_of_records(records: Sequence[asyncpg.Record]) -> StoredRuns:
    """What rollups and scores need of the rows an INSERT … ON CONFLICT returned (the rare path)."""
    index: dict[CellKey, int] = {}
    out = np.zeros(len(records), dtype=SPAN_DTYPE)
    for i, r in enumerate(records):
        key = (
            r["project_id"],
            RollupKey(r["project_name"], r["app_version"], r["prompt_name"], r["prompt_version"], r["model"]),
        )
        flags = IS_ERROR if r["status"] == 2 else 0
        flags |= (IS_GENERATION if r["is_generation"] else 0) | (0 if r["parent_span_id"] else IS_ROOT)
        for name, flag in _PRESENCE:
            flags |= flag if r[name] is not None else 0
        out[i] = (
            index.setdefault(key, len(index)),
            flags,
            r["start_ns"],
            r["end_ns"],
            r["latency_ms"],
            r["ttft_ms"] or 0.0,
            r["input_tokens"] or 0,
            r["output_tokens"] or 0,
            r["cost"] or 0.0,
            r["input_cost"] or 0.0,
            r["output_cost"] or 0.0,
        )
    traces: dict[uuid.UUID, set[bytes]] = defaultdict(set)
    for r in records:
        traces[r["project_id"]].add(r["trace_id"])
    trace_ids = b"".join(r["trace_id"] for r in records)
    return StoredRuns(len(records), set(traces), out, trace_ids, list(index), lambda: traces)


async def store_runs(conn: Conn, batch: RunBatch) -> StoredRuns:
    """Insert runs not stored before; return what was actually inserted.

    Almost every batch is new: it is COPYed (binary) straight into `runs` (its key refuses a span
    stored before), which costs Postgres a fraction of a staged INSERT … ON CONFLICT … RETURNING.
    Only when that refuses a duplicate (a redelivered batch, a client's retry) is the batch staged
    and inserted ON CONFLICT DO NOTHING, keeping exactly the rows that were new.
    """
    try:
        async with conn.transaction():  # a savepoint: a refused COPY leaves the batch's transaction usable
            await conn.copy_to_table("runs", source=batch.copy, columns=RUN_COLUMNS, format="binary")  # type: ignore[arg-type]
        return batch.stored()
    except asyncpg.UniqueViolationError:
        await conn.execute(_STAGE_RUNS)
        await conn.copy_to_table("runs_stage", source=batch.copy, columns=RUN_COLUMNS, format="binary")  # type: ignore[arg-type]
        return _stored_of_records(await conn.fetch(_INSERT_RUNS))


_STAGE_SCORES = "CREATE TEMP TABLE IF NOT EXISTS scores_stage (LIKE scores INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_INSERT_SCORES = f"""
INSERT INTO scores ({", ".join(SCORE_COLUMNS)}) SELECT {", ".join(SCORE_COLUMNS)} FROM scores_stage
ON CONFLICT DO NOTHING
RETURNING project_id, score_id, trace_id, span_id, name, value, string_value, data_type, is_error
"""
_PENDING_COLUMNS = "project_id, score_id, trace_id, span_id, name, value, string_value, data_type, is_error"


def _pending(rows: Iterable[asyncpg.Record]) -> list[PendingScore]:
    return [
        PendingScore(
            r["project_id"],
            r["score_id"],
            r["trace_id"],
            r["span_id"],
            r["name"],
            r["value"],
            r["data_type"] != _CATEGORICAL,
            r["is_error"],
            r["string_value"],
        )
        for r in rows
    ]


async def store_scores(conn: Conn, rows: Sequence[ScoreRow]) -> list[PendingScore]:
    """Insert scores not stored before; return the new ones (all pending until settled)."""
    await conn.execute(_STAGE_SCORES)
    await conn.copy_records_to_table("scores_stage", records=rows, columns=SCORE_COLUMNS)
    return _pending(await conn.fetch(_INSERT_SCORES))


async def pending_of_traces(conn: Conn, runs: StoredRuns) -> list[PendingScore]:
    """Lock the pending scores of the traces of these newly stored runs; those another transaction holds
    are its to settle."""
    if not runs.count:
        return []
    traces: dict[uuid.UUID, set[bytes]] | None = None
    out: list[PendingScore] = []
    for project in sorted(runs.projects):
        # Most batches find nothing waiting: ask that first, cheaply, before matching thousands of traces.
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM scores WHERE project_id = $1 AND NOT applied)", project
        ):
            continue
        traces = traces if traces is not None else runs.traces()
        rows = await conn.fetch(
            f"SELECT {_PENDING_COLUMNS} FROM scores WHERE project_id = $1 AND NOT applied "
            "AND trace_id = ANY($2::bytea[]) ORDER BY score_id FOR UPDATE SKIP LOCKED",
            project,
            list(traces.get(project, ())),
        )
        out.extend(_pending(rows))
    return out


async def oldest_pending(conn: Conn, limit: int, min_age_seconds: float) -> list[PendingScore]:
    rows = await conn.fetch(
        f"SELECT {_PENDING_COLUMNS} FROM scores WHERE NOT applied "
        "AND received_at < now() - make_interval(secs => $2) ORDER BY received_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
        min_age_seconds,
    )
    return _pending(rows)


async def _trace_spans(conn: Conn, project: uuid.UUID, traces: list[bytes]) -> dict[bytes, list]:
    rows = await conn.fetch(
        "SELECT trace_id, span_id, parent_span_id, start_ns, is_generation, project_name, app_version, prompt_name, "
        "prompt_version, model FROM runs WHERE project_id = $1 AND trace_id = ANY($2::bytea[])",
        project,
        traces,
    )
    spans: dict[bytes, list[TraceSpan]] = defaultdict(list)
    for r in rows:
        key = RollupKey(r["project_name"], r["app_version"], r["prompt_name"], r["prompt_version"], r["model"])
        spans[r["trace_id"]].append(
            TraceSpan(r["span_id"], r["parent_span_id"], r["start_ns"], r["is_generation"], key)
        )
    return spans


async def settle_scores(conn: Conn, pending: Sequence[PendingScore]) -> list[AppliedScore]:
    """Settle the scores whose run is stored (marking them applied); return what they add to rollups."""
    by_project: dict[uuid.UUID, list[PendingScore]] = defaultdict(list)
    for p in pending:
        by_project[p.project_id].append(p)
    applied: list[AppliedScore] = []
    for project, scores in sorted(by_project.items()):
        spans = await _trace_spans(conn, project, sorted({s.trace_id for s in scores}))
        ids: list[str] = []
        targets: list[bytes] = []
        for score in scores:
            settled = settle(score.span_id, spans.get(score.trace_id, []))
            if settled is None:
                continue
            ids.append(score.score_id)
            targets.append(settled.span_id)
            run = settled.counts_toward
            if run is not None:
                applied.append(
                    AppliedScore(
                        project,
                        run.start_ns,
                        run.key,
                        score.name,
                        score.value,
                        score.is_error,
                        score.numeric,
                        score.category,
                    )
                )
        if ids:
            await conn.execute(
                "UPDATE scores s SET applied = true, applied_at = now(), target_span_id = u.target "
                "FROM unnest($2::text[], $3::bytea[]) AS u(score_id, target) "
                "WHERE s.project_id = $1 AND s.score_id = u.score_id",
                project,
                ids,
                targets,
            )
    return applied
