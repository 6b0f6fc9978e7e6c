"""Benchmark of the deciding API on rollups loaded directly (as bench_aggregator does): compare of two
versions with 1 M runs each, a 30-day hourly time series of 20 versions, and winner over 100
candidates. Targets (issue 13): p95 < 100 ms, < 100 ms and < 200 ms.

    .venv/bin/python -m tests.bench.bench_deciding [--runs 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from services.common import db
from services.common.auth import create_project
from services.common.settings import Settings
from tests.bench.bench_aggregator import load_rollups, stamp
from tests.support.aggregator_load import STREAM_MAX_BYTES, bus_for, drop_streams
from tests.support.processes import ServiceProcess
from tests.support.scratch import delete_redis_keys, delete_streams, drop_database, with_database

REPEATS = 40
WARM = 5


async def _project(pool: asyncpg.Pool, generations: int, versions: int) -> tuple[dict[str, str], int]:
    async with pool.acquire() as conn:
        project, keys = await create_project(conn, f"bench-decide-{secrets.token_hex(3)}")
    rows = await load_rollups(pool, project, generations, versions, 30)
    return {"Authorization": f"Bearer {keys.secret_key}"}, rows


async def _timed(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> tuple[list[float], Any, float]:
    """The timings after WARM calls, the last body, and the first call's timing (nothing cached yet)."""
    timings: list[float] = []
    first = 0.0
    body: Any = None
    for i in range(WARM + REPEATS):
        started = time.perf_counter()
        response = await http.request(method, path, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        body = response.json()
        if i == 0:
            first = elapsed
        if i >= WARM:
            timings.append(elapsed)
    return timings, body, first


def _figures(timings: list[float]) -> str:
    q = statistics.quantiles(timings, n=20, method="inclusive")
    return f"p50 {statistics.median(timings):.1f} ms, p95 {q[18]:.1f} ms, max {max(timings):.1f} ms"


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    token = secrets.token_hex(3)
    database_url = with_database(settings.database_url, f"vane_bench_{token}")
    await db.migrate(database_url)
    env = {
        "VANE_DATABASE_URL": database_url,
        "VANE_NATS_URL": settings.nats_url,
        "VANE_REDIS_URL": settings.redis_url,
        "VANE_NAMESPACE": f"bench{token}",
        "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),  # the bench sends no spans: reserve little of JetStream
        "VANE_LOG_LEVEL": "warning",
    }
    pool = await db.create_pool(database_url, 1, 4)
    log_dir = Path(tempfile.mkdtemp(prefix="vane-bench-"))
    aggregator: ServiceProcess | None = None
    try:
        started = time.perf_counter()
        two, rows_two = await _project(pool, 2 * args.runs, 2)
        twenty, rows_twenty = await _project(pool, args.series_runs, 20)
        hundred, rows_hundred = await _project(pool, args.winner_runs, 100)
        print(f"loaded {rows_two + rows_twenty + rows_hundred:,} rollup rows in {time.perf_counter() - started:.0f} s")
        aggregator = ServiceProcess("aggregator", env, log_dir).start()
        now = time.time()
        window = {"from": stamp(now - 30 * 86400), "to": stamp(now + 60)}
        async with httpx.AsyncClient(base_url=aggregator.url, timeout=60) as http:
            params = {"kind": "app", "a": "app-000", "b": "app-001", **window}
            timings, body, _ = await _timed(http, "GET", "/api/v1/compare", params=params, headers=two)
            print(
                f"compare, {body['a']['n']:,} and {body['b']['n']:,} runs, {len(body['metrics'])} comparisons: "
                f"{_figures(timings)} (target p95 < 100 ms)"
            )
            # every ROW field (about 1 KB a point), and the four a chart of one panel asks for
            for fields in (None, "generation_count,median_latency_ms,p95_latency_ms,total_cost"):
                params = {"interval": "hour", **window, **({"metrics": fields} if fields else {})}
                series = "/api/v1/versions/timeseries"
                timings, body, first = await _timed(http, "GET", series, params=params, headers=twenty)
                points = sum(len(s["points"]) for s in body["series"])
                print(
                    f"time series, {len(body['series'])} versions, {points:,} hourly points over 30 days, "
                    f"{'all fields' if fields is None else 'metrics=' + fields}: {_figures(timings)} "
                    f"(target p95 < 100 ms; first call {first:.0f} ms)"
                )
            request = {
                "kind": "app",
                "weights": {"latency_ms": 2, "cost": 1, "score:helpfulness": 1},
                "from": window["from"],
                "to": window["to"],
            }
            timings, body, _ = await _timed(http, "POST", "/api/v1/winner", json=request, headers=hundred)
            print(
                f"winner over {len(body['ranking'])} candidates: {_figures(timings)} (target p95 < 200 ms) "
                f"(load average {psutil.getloadavg()[0]:.1f})"
            )
    finally:
        if aggregator is not None:
            aggregator.kill()
        await pool.close()
        bus = await bus_for(settings, settings.nats_url, env["VANE_NAMESPACE"])
        await drop_streams(bus)
        await bus.close()
        await drop_database(database_url)
        await delete_streams(settings.nats_url, env["VANE_NAMESPACE"])  # the streams' reserved bytes
        await delete_redis_keys(settings.redis_url, env["VANE_NAMESPACE"])
        print(f"logs in {log_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs of each of the two compared versions")
    parser.add_argument("--series-runs", type=int, default=2_000_000, help="runs over the 20 series' versions")
    parser.add_argument("--winner-runs", type=int, default=1_000_000, help="runs over the 100 candidates")
    asyncio.run(main(parser.parse_args()))
