"""Run retention against real Postgres: whole days past VANE_RUNS_RETENTION_DAYS go with their runs' scores,
newer days and every rollup stay, one replica at a time does it, and the runs API still answers."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.aggregator import retention
from services.aggregator.store import Conn
from tests.support.aggregator_load import eventually

pytestmark = pytest.mark.slow

NS = 1_000_000_000


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


async def _partition(pool: asyncpg.Pool, day: datetime) -> str:
    name = f"runs_{day:%Y%m%d}"
    await pool.execute(
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF runs FOR VALUES FROM ('{day.isoformat()}') "
        f"TO ('{(day + timedelta(days=1)).isoformat()}')"
    )
    return name


async def _run_with_score(pool: asyncpg.Pool, project: uuid.UUID, start: datetime) -> bytes:
    """One stored generation and one settled score of it; returns its trace id."""
    trace, span = secrets.token_bytes(16), secrets.token_bytes(8)
    start_ns = int(start.timestamp()) * NS
    await pool.execute(
        "INSERT INTO runs (project_id, start_time, trace_id, span_id, start_ns, end_ns, is_generation, latency_ms, "
        "app_version) VALUES ($1, $2, $3, $4, $5, $6, true, 100, 'v1')",
        project,
        start,
        trace,
        span,
        start_ns,
        start_ns + NS // 10,
    )
    await pool.execute(
        "INSERT INTO scores (project_id, score_id, trace_id, span_id, name, value, created_at, applied, "
        "target_span_id) VALUES ($1, $2, $3, $4, 'helpfulness', 4, $5, true, $4)",
        project,
        secrets.token_hex(8),
        trace,
        span,
        start,
    )
    return trace


async def _expired_day(pool: asyncpg.Pool, project: uuid.UUID, days_ago: int) -> str:
    """A day past a 30-day retention holding one run with a score; returns its partition."""
    day = _midnight(days_ago)
    name = await _partition(pool, day)
    await _run_with_score(pool, project, day + timedelta(hours=1))
    return name


async def _reader_of_runs(conn: Conn, project: uuid.UUID) -> asyncpg.transaction.Transaction:
    """An open transaction that has read the project's runs (every day of them): a detach waits for it."""
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    await conn.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project)
    return tx


async def _rollup(pool: asyncpg.Pool, project: uuid.UUID, day: datetime) -> None:
    await pool.execute(
        "INSERT INTO rollups (project_id, width_minutes, bucket, app_version, prompt_name, prompt_version, model, "
        "generation_count) VALUES ($1, 1440, $2, 'v1', '', 0, '', 1)",
        project,
        int(day.timestamp()) // 60,
    )


async def _partitions(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'runs'::regclass"
    )
    return {r["relname"] for r in rows}


async def _old_and_new_days(pool: asyncpg.Pool, project: uuid.UUID) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """A run with a score on each of four days past a 30-day retention and on three days within it."""
    old, new = {}, {}
    for days_ago in (45, 40, 33, 31):
        day = _midnight(days_ago)
        name = await _partition(pool, day)  # before the run: an assignment evaluates its value first
        old[name] = await _run_with_score(pool, project, day + timedelta(hours=12))
        await _rollup(pool, project, day)
    for days_ago in (29, 10, 1):
        day = _midnight(days_ago)
        name = await _partition(pool, day)
        new[name] = await _run_with_score(pool, project, day + timedelta(hours=12))
        await _rollup(pool, project, day)
    return old, new


async def test_the_aggregator_drops_whole_days_past_the_retention_and_keeps_rollups_and_newer_days(
    make_project: Callable[..., Any], start_service: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    project = await make_project()
    old, new = await _old_and_new_days(pool, project.id)
    rollups_before = await pool.fetchval("SELECT count(*) FROM rollups WHERE project_id = $1", project.id)

    aggregator = start_service("aggregator", VANE_RUNS_RETENTION_DAYS="30")

    async def dropped() -> bool:
        return not (await _partitions(pool) & set(old))

    await eventually(dropped, timeout=30)
    assert set(new) <= await _partitions(pool)
    traces = await pool.fetch("SELECT DISTINCT trace_id FROM scores WHERE project_id = $1", project.id)
    assert {r["trace_id"] for r in traces} == set(new.values())  # the dropped runs' scores went with them
    rollups_after = await pool.fetchval("SELECT count(*) FROM rollups WHERE project_id = $1", project.id)
    assert rollups_after == rollups_before == len(old) + len(new)

    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:
        listed = await http.get("/api/v1/runs", params={"limit": 50})
        assert listed.status_code == 200
        assert {r["trace_id"] for r in listed.json()["runs"]} == {t.hex() for t in new.values()}
        gone = await http.get(f"/api/v1/runs/{next(iter(old.values())).hex()}")
        assert gone.status_code == 404
        kept = await http.get(f"/api/v1/runs/{next(iter(new.values())).hex()}")
        assert kept.status_code == 200 and kept.json()["spans"][0]["scores"]


async def test_one_replica_at_a_time_and_zero_days_keep_everything(
    make_project: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    project = await make_project()
    name = await _expired_day(pool, project.id, days_ago=50)

    assert await retention.drop_expired(pool, 0) is None
    async with pool.acquire() as other_replica:
        await other_replica.execute("SELECT pg_advisory_lock($1)", retention.LOCK_KEY)
        try:
            assert await retention.drop_expired(pool, 30) is None
        finally:
            await other_replica.execute("SELECT pg_advisory_unlock($1)", retention.LOCK_KEY)
    assert name in await _partitions(pool)

    dropped = await retention.drop_expired(pool, 30)
    assert dropped is not None and name in {d.partition for d in dropped}
    assert next(d for d in dropped if d.partition == name).scores == 1
    assert _midnight(50).date() in retention.days_of(dropped)
    assert name not in await _partitions(pool)


async def _waiting_detach(pool: asyncpg.Pool) -> int | None:
    """The backend of a partition's detach or drop that waits for a lock, if one does."""
    return await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE (query LIKE 'ALTER TABLE runs DETACH PARTITION%' "
        "OR query LIKE 'DROP TABLE%') AND wait_event_type = 'Lock' AND datname = current_database()"
    )


async def test_writes_go_on_while_retention_waits_for_a_transaction_that_sees_the_day(
    make_project: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    project = await make_project()
    name = await _expired_day(pool, project.id, days_ago=60)
    async with pool.acquire() as reader:
        reader_tx = await _reader_of_runs(reader, project.id)
        dropping = asyncio.create_task(retention.drop_expired(pool, 30))
        await eventually(lambda: _waiting_detach(pool), timeout=30)

        # a dropped partition would queue an exclusive lock on `runs`, and this write behind it until
        # retention gave up
        await asyncio.wait_for(_run_with_score(pool, project.id, _midnight(0) + timedelta(minutes=1)), timeout=30)
        assert not dropping.done()
        await reader_tx.commit()
    dropped = await asyncio.wait_for(dropping, timeout=30)
    assert dropped is not None and name in {d.partition for d in dropped}
    assert name not in await _partitions(pool)


async def test_a_detach_cut_short_is_finished_by_the_next_round(
    make_project: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    project = await make_project()
    name = await _expired_day(pool, project.id, days_ago=70)
    async with pool.acquire() as reader, pool.acquire() as killed_replica:
        reader_tx = await _reader_of_runs(reader, project.id)
        detach = asyncio.create_task(killed_replica.execute(f"ALTER TABLE runs DETACH PARTITION {name} CONCURRENTLY"))
        backend = await eventually(lambda: _waiting_detach(pool), timeout=30)
        await pool.execute("SELECT pg_cancel_backend($1)", backend)
        with pytest.raises(asyncpg.QueryCanceledError):
            await detach
        await reader_tx.commit()
    pending = await pool.fetchval(
        "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1", name
    )
    assert pending is True

    dropped = await retention.drop_expired(pool, 30)
    assert dropped is not None and name in {d.partition for d in dropped}
    assert next(d for d in dropped if d.partition == name).scores == 1
    assert name not in await _partitions(pool)
