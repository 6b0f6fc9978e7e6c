"""Aggregator benchmark: consumption throughput, exactness through three SIGKILLs at full size, and
metrics query latency at 10 million generations (100 versions over 30 days, rollups loaded directly).

    .venv/bin/python -m tests.bench.bench_aggregator [--spans 100000] [--rate 20000] [--skip-kill] [--skip-query]
        [--windows 20]

Uses the machine's NATS and Postgres with a database and namespace of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil

from services.aggregator.rollup import (
    ALL_SCORES,
    COST,
    INPUT_TOKENS,
    LATENCY,
    LEVELS,
    OUTPUT_TOKENS,
    TTFT,
    Cell,
    RollupKey,
    at_levels,
    combine_cells,
    score_metric,
    to_blob,
)
from services.aggregator.sketches import Sketch
from services.common import db
from services.common.auth import create_project
from services.common.settings import Settings
from tests.bench.measure import PeakRss
from tests.support.aggregator_load import STREAM_MAX_BYTES, bus_for, drop_streams, make_load, publish_spans
from tests.support.processes import ServiceProcess
from tests.support.scratch import drop_database, with_database

STREAM_BYTES = STREAM_MAX_BYTES


async def _count(pool: asyncpg.Pool, project: uuid.UUID) -> int:
    return int(
        await pool.fetchval(
            "SELECT coalesce(sum(generation_count), 0) FROM rollups WHERE project_id = $1 AND width_minutes = 1",
            project,
        )
    )


async def _wait_for(pool: asyncpg.Pool, project: uuid.UUID, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while await _count(pool, project) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await _count(pool, project)} of {n} rolled up")
        await asyncio.sleep(0.05)


async def _postgres_cpu_of(pool: asyncpg.Pool, proc: psutil.Process) -> float:
    """CPU seconds used so far by the Postgres backends serving `proc`'s connections."""
    ports = {c.laddr.port for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == 5432}
    rows = await pool.fetch("SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()")
    total = 0.0
    for r in rows:
        if r["client_port"] in ports:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(r["pid"]).cpu_times()
                total += times.user + times.system
    return total


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def bench_consume(env: dict[str, str], settings: Settings, pool: asyncpg.Pool, spans: int, log_dir: Path) -> None:
    """Spans published first, then one aggregator drains them: its sustained spans/s and memory."""
    async with pool.acquire() as conn:
        project, _ = await create_project(conn, f"bench-{secrets.token_hex(3)}")
    load = make_load(project, spans, score_every=0, spread_seconds=600)
    bus = await bus_for(settings, env["VANE_NATS_URL"], env["VANE_NAMESPACE"])
    await publish_spans(bus, project, load.spans, 500)
    await bus.close()
    aggregator = ServiceProcess("aggregator", env, log_dir).start()
    assert aggregator.proc is not None
    rss = PeakRss(aggregator.proc.pid)
    proc = psutil.Process(aggregator.proc.pid)
    cpu_before = _cpu(proc)
    started = time.perf_counter()
    await _wait_for(pool, project, spans)
    elapsed = time.perf_counter() - started
    aggregator_cpu = _cpu(proc) - cpu_before
    # the backends were opened by this aggregator, so their whole CPU time is this load's
    postgres_cpu = await _postgres_cpu_of(pool, proc)
    print(
        f"consume: {spans} spans (500 per message) stored and rolled up in {elapsed:.1f}s "
        f"= {spans / elapsed:,.0f} spans/s (load average {psutil.getloadavg()[0]:.1f})"
    )
    print(
        f"consume: CPU per span: aggregator {aggregator_cpu / spans * 1e6:.1f} µs, "
        f"its Postgres backends {postgres_cpu / spans * 1e6:.1f} µs"
    )
    print(f"consume: aggregator peak RSS {rss.stop():.0f} MB")
    aggregator.kill()


async def bench_kills(env: dict[str, str], settings: Settings, pool: asyncpg.Pool, spans: int, log_dir: Path) -> None:
    """The issue's check at full size: three SIGKILLs during the load, then exact counts and totals."""
    async with pool.acquire() as conn:
        project, _ = await create_project(conn, f"bench-kill-{secrets.token_hex(3)}")
    load = make_load(project, spans, score_every=0, spread_seconds=600)
    bus = await bus_for(settings, env["VANE_NATS_URL"], env["VANE_NAMESPACE"])
    aggregator = ServiceProcess("aggregator", env, log_dir).start()
    publisher = asyncio.create_task(publish_spans(bus, project, load.spans, 500))
    for fraction in (0.2, 0.45, 0.7):
        await _wait_for(pool, project, int(fraction * spans))
        aggregator.kill()
        aggregator.start()
    await publisher
    started = time.perf_counter()
    await _wait_for(pool, project, spans)
    totals = await pool.fetch(
        "SELECT width_minutes, sum(generation_count) AS n, sum(input_tokens) AS i FROM rollups "
        "WHERE project_id = $1 GROUP BY 1",
        project,
    )
    runs = await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project)
    expected = (spans, sum(s.input_tokens for s in load.spans))
    exact = runs == spans and all((r["n"], r["i"]) == expected for r in totals) and len(totals) == len(LEVELS)
    print(
        f"kill -9 x3 during {spans} spans: runs {runs}, every level exact: {exact} "
        f"(drained {time.perf_counter() - started:.1f}s after the load)"
    )
    aggregator.kill()
    await bus.close()


async def bench_freshness(
    env: dict[str, str], settings: Settings, pool: asyncpg.Pool, rate: int, probes: int, log_dir: Path
) -> None:
    """Delay from a probe batch's JetStream ack to its rollup row, while a steady load of `rate` spans/s runs."""
    async with pool.acquire() as conn:
        project, _ = await create_project(conn, f"bench-fresh-{secrets.token_hex(3)}")
    bus = await bus_for(settings, env["VANE_NATS_URL"], env["VANE_NAMESPACE"])
    aggregator = ServiceProcess("aggregator", env, log_dir).start()
    stop = asyncio.Event()
    per_tick = max(1, rate // 20)  # one export every 50 ms

    async def background() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            load = make_load(project, per_tick, seed=seed, score_every=0, spread_seconds=60)
            await publish_spans(bus, project, load.spans, per_tick)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(background())
    await asyncio.sleep(2.0)  # let the load settle in
    delays = []
    for i in range(probes):
        name = f"probe-{i}-{secrets.token_hex(3)}"
        probe = make_load(project, 1, seed=10_000 + i, score_every=0, spread_seconds=1, app_versions=(name,))
        await publish_spans(bus, project, probe.spans, 1)
        sent = time.perf_counter()
        visible = "SELECT 1 FROM rollups WHERE project_id = $1 AND width_minutes = 1 AND app_version = $2"
        while not await pool.fetchval(visible, project, name):  # noqa: ASYNC110 (polling Postgres)
            await asyncio.sleep(0.005)
        delays.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.1)
    stop.set()
    await task
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{aggregator.url}/metrics")).text
    batch = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("vane_aggregator_batch_seconds_") and 'stream="spans"' in line and "bucket" not in line
    }
    batches = batch.get('vane_aggregator_batch_seconds_count{stream="spans"}', 0.0)
    seconds = batch.get('vane_aggregator_batch_seconds_sum{stream="spans"}', 0.0)
    print(f"freshness: {batches:.0f} span batches committed, {seconds / max(batches, 1) * 1000:.0f} ms each on average")
    q = statistics.quantiles(delays, n=100)
    print(
        f"freshness under {rate:,} spans/s published straight to the stream: ack→rollup p50 "
        f"{statistics.median(delays):.0f} ms, p99 {q[98]:.0f} ms over {probes} probes "
        f"(load average {psutil.getloadavg()[0]:.1f})"
    )
    aggregator.kill()
    await bus.close()


def _version_cells(project: uuid.UUID, key: RollupKey, start_minute: int, hours: int, per_hour: int, rng: Any) -> dict:
    """Minute cells for the first and last hour, hour cells between: what 30 days of traffic leave."""
    cells: dict[tuple, Cell] = {}
    for h in range(hours):
        edge = h in (0, hours - 1)
        slots = 60 if edge else 1
        for slot in range(slots):
            n = int(rng.poisson(per_hour / slots))
            if n == 0:
                continue
            latency = rng.lognormal(6.5, 0.8, n)
            cost = rng.lognormal(-6.0, 0.9, n)
            scores = rng.integers(1, 6, n).astype(float)
            minute = start_minute + h * 60 + slot
            start_ns = minute * 60_000_000_000
            cell = Cell(
                generations=n,
                input_tokens=int(n * 400),
                output_tokens=int(n * 90),
                cost=float(cost.sum()),
                first_ns=start_ns,
                last_ns=start_ns + 59_000_000_000,
                sketches={
                    LATENCY: Sketch.of(latency),
                    TTFT: Sketch.of(latency * 0.2),
                    INPUT_TOKENS: Sketch.of(rng.lognormal(6.0, 0.6, n).round()),
                    OUTPUT_TOKENS: Sketch.of(rng.lognormal(4.5, 0.7, n).round()),
                    COST: Sketch.of(cost),
                    score_metric("helpfulness"): Sketch.of(scores),
                    ALL_SCORES: Sketch.of(scores),
                },
            )
            cells[(project, 1, minute, key)] = cell
    return cells


async def _load_rollups(pool: asyncpg.Pool, project: uuid.UUID, generations: int, versions: int, days: int) -> int:
    rng = np.random.default_rng(5)
    hours = days * 24
    start_minute = (time.time_ns() // 60_000_000_000 - days * 1440) // 60 * 60
    per_hour = generations / versions / hours
    rows = 0
    for v in range(versions):
        key = RollupKey("bench-app", f"app-{v:03d}", "bench", v + 1, "gpt-4o")
        minutes = _version_cells(project, key, start_minute, hours, int(per_hour), rng)
        # hour cells stand for the minutes between the edges; the edges' minutes feed every level
        hourly = {k: c for k, c in minutes.items() if k[2] - start_minute in range(60, (hours - 1) * 60)}
        edges = {k: c for k, c in minutes.items() if k not in hourly}
        cells = at_levels(edges)
        cells_hourly = at_levels(
            {(p, 1, m, k): c for (p, _, m, k), c in hourly.items()}, tuple(w for w in LEVELS if w >= 60)
        )
        for cid, cell in cells_hourly.items():
            # at_levels shares one cell between levels when a block holds a single finer one: never absorb in place
            cells[cid] = combine_cells([cells[cid], cell]) if cid in cells else cell
        records = [
            (
                p,
                w,
                b,
                k.project_name,
                k.app_version,
                k.prompt_name,
                k.prompt_version,
                k.model,
                c.generations,
                0,
                c.input_tokens,
                c.output_tokens,
                c.cost,
                c.first_ns,
                c.last_ns,
                to_blob(c),
            )
            for (p, w, b, k), c in cells.items()
        ]
        await pool.copy_records_to_table(
            "rollups",
            records=records,
            columns=[
                "project_id",
                "width_minutes",
                "bucket",
                "project_name",
                "app_version",
                "prompt_name",
                "prompt_version",
                "model",
                "generation_count",
                "error_count",
                "input_tokens",
                "output_tokens",
                "cost",
                "first_ns",
                "last_ns",
                "sketches",
            ],
        )
        rows += len(records)
    await pool.execute("ANALYZE rollups")
    return rows


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _figures(timings: list[float]) -> str:
    q = statistics.quantiles(timings, n=20, method="inclusive")
    return f"p50 {statistics.median(timings):.1f} ms, p95 {q[18]:.1f} ms, max {max(timings):.1f} ms"


async def _timed(http: httpx.AsyncClient, path: str, window: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await http.get(path, params=window)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def _moved_windows(now: float, n: int) -> list[dict[str, str]]:
    """n ranges of about 29 days whose edges fall in different hours (each covers other edge blocks)."""
    return [
        {"from": _stamp(now - 29.5 * 86400 + i * 97 * 60), "to": _stamp(now - 3600 - i * 53 * 60)} for i in range(n)
    ]


async def _cold(
    aggregator: ServiceProcess, headers: dict[str, str], path: str, windows: list[dict[str, str]], warm: dict[str, str]
) -> list[float]:
    """Each window asked of a restarted aggregator whose process is warm (one query of other days) but has
    decoded none of the window's rows: a user's first look after a deploy, or at days nobody looked at."""
    timings = []
    for window in windows:
        aggregator.kill()
        aggregator.start()
        async with httpx.AsyncClient(base_url=aggregator.url, headers=headers, timeout=30) as http:
            for _ in range(2):
                await _timed(http, path, warm)
            timings.append((await _timed(http, path, window))[0])
    return timings


async def bench_query(env: dict[str, str], pool: asyncpg.Pool, log_dir: Path, generations: int, windows: int) -> None:
    """p50/p95 of both metrics endpoints at `generations` in rollups (100 versions, 30 days): cached (one
    window asked again), uncached (`windows` different windows: nothing merged for them, rows of earlier
    windows decoded), and cold (a restarted aggregator: no row decoded)."""
    async with pool.acquire() as conn:
        project, keys = await create_project(conn, f"bench-query-{secrets.token_hex(3)}")
    started = time.perf_counter()
    rows = await _load_rollups(pool, project, generations, 100, 30)
    print(f"query: loaded {rows:,} rollup rows for {generations:,} generations in {time.perf_counter() - started:.0f}s")
    aggregator = ServiceProcess("aggregator", env, log_dir).start()
    assert aggregator.proc is not None
    rss = PeakRss(aggregator.proc.pid)
    now = time.time()
    window = {"from": _stamp(now - 30 * 86400 + 60), "to": _stamp(now)}
    moved = _moved_windows(now, windows)
    warm = {"from": _stamp(now - 30 * 86400), "to": _stamp(now - 29.8 * 86400)}  # days no timed window covers
    headers = {"Authorization": f"Bearer {keys.secret_key}"}
    paths = ("/api/v1/versions/metrics", "/api/v1/prompts/bench/metrics")
    async with httpx.AsyncClient(base_url=aggregator.url, headers=headers, timeout=30) as http:
        for path in paths:
            timings = []
            first = 0.0
            for i in range(60):
                elapsed, body = await _timed(http, path, window)
                if i == 0:  # nothing merged yet: every row's sketches fetched and merged
                    first = elapsed
                if i >= 10:  # the first requests warm the caches and the prepared statements
                    timings.append(elapsed)
            total = sum(r["generation_count"] for r in body["versions"])
            print(
                f"query {path}: {len(body['versions'])} versions, {total:,} generations: cached "
                f"{_figures(timings)}; first (uncached) {first:.0f} ms (load average {psutil.getloadavg()[0]:.1f})"
            )
        for path in paths:
            cpu_before = _cpu(psutil.Process(aggregator.proc.pid))
            timings = [(await _timed(http, path, w))[0] for w in moved]
            cpu = (_cpu(psutil.Process(aggregator.proc.pid)) - cpu_before) / len(moved) * 1000
            print(
                f"query {path}: uncached over {len(moved)} different windows: {_figures(timings)}; "
                f"aggregator CPU {cpu:.0f} ms per query (load average {psutil.getloadavg()[0]:.1f})"
            )
    print(f"query: aggregator peak RSS {rss.stop():.0f} MB")
    for path in paths:
        timings = await _cold(aggregator, headers, path, moved[: max(windows // 2, 2)], warm)
        print(
            f"query {path}: cold (restarted aggregator, no row decoded) over {len(timings)} windows: "
            f"{_figures(timings)} (load average {psutil.getloadavg()[0]:.1f})"
        )
    aggregator.kill()


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
        "VANE_STREAM_MAX_BYTES": str(STREAM_BYTES),
        "VANE_LOG_LEVEL": "warning",
        "VANE_DB_POOL_MAX": "10",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="vane-bench-"))
    pool = await db.create_pool(database_url, 1, 4)
    steps: list[Callable[[], Any]] = [lambda: bench_consume(env, settings, pool, args.spans, log_dir)]
    if not args.skip_freshness:
        steps.append(lambda: bench_freshness(env, settings, pool, args.rate, args.probes, log_dir))
    if not args.skip_kill:
        steps.append(lambda: bench_kills(env, settings, pool, args.spans, log_dir))
    if not args.skip_query:
        steps.append(lambda: bench_query(env, pool, log_dir, args.generations, args.windows))
    try:
        for step in steps:
            await step()
    finally:
        await pool.close()
        bus = await bus_for(settings, settings.nats_url, env["VANE_NAMESPACE"])
        await drop_streams(bus)
        await bus.close()
        await drop_database(database_url)
        print(f"logs in {log_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=10_000_000)
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--rate", type=int, default=20_000, help="background spans/s during the freshness probes")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--skip-query", action="store_true")
    parser.add_argument("--windows", type=int, default=20, help="different windows the uncached query figures cover")
    asyncio.run(main(parser.parse_args()))
