"""Exact totals through faults: the aggregator SIGKILLed mid-load, two replicas sharing the stream,
and Postgres restarted under load (a Postgres of this test's own, never the shared one)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.aggregator.rollup import LEVELS
from services.common import db
from services.common.auth import create_project
from services.common.bus import Bus
from tests.support.aggregator_load import (
    STREAM_MAX_BYTES,
    Load,
    eventually,
    make_load,
    publish_scores,
    publish_spans,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.slow
PG_BIN = "/usr/lib/postgresql/15/bin"


def _env(namespace: str, **extra: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES), **extra}


async def _publish_paced(bus: Bus, load: Load, per_batch: int = 500, pause: float = 0.05) -> None:
    """Spans in batches over a few seconds, a tenth of the batches twice (as a retrying client would)."""
    for i in range(0, len(load.spans), per_batch):
        await publish_spans(bus, load.project_id, load.spans[i : i + per_batch], per_batch)
        if (i // per_batch) % 10 == 3:
            await publish_spans(bus, load.project_id, load.spans[i : i + per_batch], per_batch)
        await asyncio.sleep(pause)


async def _assert_exact(conn: asyncpg.Connection | asyncpg.Pool, load: Load) -> None:
    """Runs stored once each, and every rollup level holding exactly the load's totals."""
    runs = await conn.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", load.project_id)
    assert runs == len(load.spans)
    levels = await conn.fetch(
        "SELECT width_minutes, sum(generation_count) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o "
        "FROM rollups WHERE project_id = $1 GROUP BY width_minutes ORDER BY width_minutes",
        load.project_id,
    )
    expected = (len(load.spans), sum(s.input_tokens for s in load.spans), sum(s.output_tokens for s in load.spans))
    assert [r["width_minutes"] for r in levels] == list(LEVELS)
    for r in levels:
        assert (r["n"], r["i"], r["o"]) == expected, r["width_minutes"]


async def _rolled_up(conn: asyncpg.Connection | asyncpg.Pool, load: Load) -> bool:
    n = await conn.fetchval(
        "SELECT coalesce(sum(generation_count), 0) FROM rollups WHERE project_id = $1 AND width_minutes = 1",
        load.project_id,
    )
    return bool(n == len(load.spans))


async def test_sigkill_three_times_during_a_load_leaves_exact_counts_and_totals(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str, pool: Any
) -> None:
    project = await make_project()
    load = make_load(project.id, 20_000, score_every=0)
    aggregator = start_service("aggregator", **_env(namespace))
    publisher = asyncio.create_task(_publish_paced(bus, load))
    for kill in range(3):
        before = await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project.id)

        async def progressed(before: int = before) -> bool:
            now = await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project.id)
            return bool(now > before) or publisher.done()

        await eventually(progressed, timeout=60, every=0.05)
        await asyncio.sleep(0.2 * kill)
        aggregator.kill()
        aggregator.start()
    await publisher
    await eventually(lambda: _rolled_up(pool, load), timeout=90)
    await asyncio.sleep(1.0)  # anything still redelivered would land now
    await _assert_exact(pool, load)


async def test_two_replicas_give_the_same_exact_totals_as_one(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str, pool: Any
) -> None:
    project = await make_project()
    load = make_load(project.id, 8_000, score_every=2)
    replicas = [start_service("aggregator", **_env(namespace)) for _ in range(2)]
    await asyncio.gather(_publish_paced(bus, load, per_batch=200, pause=0.0), publish_scores(bus, load.scores, 100))
    await eventually(lambda: _rolled_up(pool, load), timeout=90)
    await _assert_exact(pool, load)
    async with httpx.AsyncClient(headers=project.bearer, timeout=10) as http:

        async def all_scores_counted() -> list[dict[str, Any]] | None:
            rows = (await http.get(f"{replicas[1].url}/api/v1/versions/metrics")).json()["versions"]
            scored = sum(r["scores"]["helpfulness"]["count"] for r in rows if "helpfulness" in r["scores"])
            return rows if scored == len(load.scores) else None

        rows = await eventually(all_scores_counted, timeout=60)
        assert sum(r["generation_count"] for r in rows) == len(load.spans)
        assert sum(r["total_input_tokens"] for r in rows) == sum(s.input_tokens for s in load.spans)
        one = (await http.get(f"{replicas[0].url}/api/v1/versions/metrics")).json()["versions"]
        assert one == rows


@pytest.fixture
def own_postgres() -> Iterator[Callable[[str], None]]:
    """A Postgres of this test's own on a free port; yields a control taking 'stop' or 'start'."""
    data = tempfile.mkdtemp(prefix="vane-pg-")
    shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    port = free_port()
    subprocess.run(
        [f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
        user="postgres",
        check=True,
        capture_output=True,
    )
    log = os.path.join(data, "log")

    def control(action: str) -> None:
        args = [f"{PG_BIN}/pg_ctl", "-D", data, "-l", log, "-w"]
        if action == "start":
            args += ["-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"]
        else:
            args += ["-m", "immediate", "stop"]
        subprocess.run(args, user="postgres", check=True, capture_output=True)

    control("start")
    control.url = f"postgresql://postgres@127.0.0.1:{port}/vane"  # type: ignore[attr-defined]
    yield control
    subprocess.run([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"], user="postgres", capture_output=True)
    shutil.rmtree(data, ignore_errors=True)


async def test_postgres_restarted_during_a_load_loses_nothing(
    own_postgres: Any, start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    url = own_postgres.url
    await db.migrate(url)
    conn = await asyncpg.connect(url)
    project_id, _ = await create_project(conn, "pg-restart")
    await conn.close()
    load = make_load(project_id, 10_000, score_every=0)
    start_service("aggregator", **_env(namespace, VANE_DATABASE_URL=url))
    publisher = asyncio.create_task(_publish_paced(bus, load, pause=0.1))

    async def some_stored() -> bool:
        c = await asyncpg.connect(url)
        try:
            return bool(await c.fetchval("SELECT count(*) FROM runs") > 0)
        finally:
            await c.close()

    await eventually(some_stored, timeout=60, every=0.05)
    await asyncio.to_thread(own_postgres, "stop")
    await asyncio.sleep(2.0)
    await asyncio.to_thread(own_postgres, "start")
    await publisher
    check = await asyncpg.connect(url)
    try:
        await eventually(lambda: _rolled_up(check, load), timeout=90)
        await _assert_exact(check, load)
    finally:
        await check.close()
