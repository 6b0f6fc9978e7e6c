"""End-to-end benchmark: OTLP/HTTP export → ingest → JetStream → aggregator → visible in the metrics API.

    .venv/bin/python -m tests.bench.bench_pipeline [--spans 200000] [--probes 40]

Prints sustained spans/s from the first export until every span is counted by the API (`--bodies
demo`: five-span runs, assembled into runs by the aggregator as they arrive), the p50/p99
delay from one export's 200 to its span being visible (while a paced background load of pre-encoded
requests runs at `--background-rate` spans/s), and the peak
RSS of each service (with its worker processes). Uses a database and namespace of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nats.js.errors import NotFoundError

from services.cli.demo import demo_generations, otlp_request
from services.common.bus import Bus
from services.common.settings import Settings
from tests.bench.bench_ingest import SPANS_PER_REQUEST, unique_bodies
from tests.bench.measure import CpuSplit, PeakRss
from tests.bench.raw_http import RawPoster
from tests.support.aggregator_load import STREAM_MAX_BYTES, bus_for, drop_streams
from tests.support.processes import ServiceProcess
from tests.support.scratch import drop_database, migrated_project, with_database

PER_REQUEST = 500
RUN_SPANS, RUN_GENERATIONS = 5, 2  # a demo run's spans, and its LLM calls among them


PROTOBUF = {"Content-Type": "application/x-protobuf"}


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """The answer's status; a connection the server closed while idle is retried, as an exporter would."""
    for attempt in range(3):
        try:
            async with http.post(url, data=body, headers=PROTOBUF) as response:
                await response.read()
                return response.status
        except aiohttp.ClientConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _without_evaluator(bus: Bus) -> None:
    """Keep the evaluator's durable off the spans stream: the bench runs no evaluator, and its durable
    would hold every span in the stream until the stream is full. Each service that starts (every
    ingest worker) makes the topology's consumers again, so it is removed whenever it reappears."""
    while True:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(bus.topology.spans_stream, bus.topology.EVALUATOR_SPANS)
        await asyncio.sleep(0.5)


async def _versions(http: aiohttp.ClientSession, aggregator: str, params: dict[str, str] | None = None) -> list[Any]:
    async with http.get(f"{aggregator}/api/v1/versions/metrics", params=params) as response:
        return (await response.json())["versions"] if response.status == 200 else []


async def _counted(http: aiohttp.ClientSession, aggregator: str) -> int:
    return sum(r["generation_count"] for r in await _versions(http, aggregator))


async def _export_all(ingest: str, headers: dict[str, str], bodies: list[bytes], concurrency: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def sender() -> None:
        poster = RawPoster(f"{ingest}/v1/traces", {**headers, **PROTOBUF})
        try:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    if await poster.post(body) == 200:
                        break
                    await asyncio.sleep(0.2)  # 503: the stream is full, retry as the OTLP exporter would
        finally:
            await poster.close()

    await asyncio.gather(*(sender() for _ in range(concurrency)))


async def throughput(
    http: aiohttp.ClientSession,
    urls: dict[str, str],
    headers: dict[str, str],
    spans: int,
    concurrency: int,
    bodies: str,
    cpu: CpuSplit,
) -> None:
    if bodies == "realistic":  # bench_ingest's requests: 512 GenAI + traceAI spans, ~880 bytes each
        requests = unique_bodies(-(-spans // SPANS_PER_REQUEST))
        spans = len(requests) * SPANS_PER_REQUEST
        generations = spans
    else:  # the demo's runs: five spans each (root, retrieval, two LLM calls, a tool), assembled into runs
        runs = spans // RUN_SPANS
        requests = _bodies(runs, days=0.01)
        spans, generations = runs * RUN_SPANS, runs * RUN_GENERATIONS
    print(f"pipeline: {len(requests):,} {bodies} requests of {sum(map(len, requests)) / spans:.0f} bytes per span")
    cpu.start()
    started = time.perf_counter()
    await _export_all(urls["ingest"], headers, requests, concurrency)
    exported = time.perf_counter() - started
    while True:
        if await _counted(http, urls["aggregator"]) >= generations:
            break
        await asyncio.sleep(0.05)
    visible = time.perf_counter() - started
    used = cpu.stop()
    print(f"pipeline: {spans:,} spans exported in {exported:.1f}s ({spans / exported:,.0f} spans/s accepted by ingest)")
    print(f"pipeline: all visible in the API after {visible:.1f}s = {spans / visible:,.0f} spans/s end to end")
    split = ", ".join(
        f"{group} {seconds / spans * 1e6:.1f}" for group, seconds in sorted(used.items(), key=lambda g: -g[1])
    )
    total = sum(used.values())
    print(f"pipeline: CPU µs per span: {split}; all {total / spans * 1e6:.1f} ({total / visible:.2f} cores)")


def _bodies(runs: int, days: float) -> list[bytes]:
    """Pre-encoded export requests of unique runs, so that sending costs the bench little CPU."""
    generations = demo_generations(runs, days=days, seed=secrets.randbelow(10**6))
    per = PER_REQUEST // RUN_SPANS
    return [otlp_request(generations[i : i + per]) for i in range(0, runs, per)]


async def _paced(http: aiohttp.ClientSession, ingest: str, bodies: list[bytes], rate: int, stop: asyncio.Event) -> int:
    """Send `bodies` at about `rate` spans/s until `stop` (or they run out); returns the spans sent."""
    sent = 0
    started = time.perf_counter()
    for body in bodies:
        if stop.is_set():
            break
        due = started + sent / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if await _post(http, f"{ingest}/v1/traces", body) == 200:
            sent += PER_REQUEST
    return sent


async def freshness(http: aiohttp.ClientSession, urls: dict[str, str], probes: int, background_rate: int) -> None:
    """Delays from a probe export's 200 until the API counts its span, under a steady paced background load."""
    stop = asyncio.Event()
    seconds = probes * 0.6 + 10  # enough bodies for the probes, with room for slow visibility
    bodies = _bodies((int(background_rate * seconds) // PER_REQUEST + 1) * (PER_REQUEST // RUN_SPANS), days=0.01)
    # Several senders, so that one slow answer does not pause the load.
    senders = max(2, background_rate // 5_000)
    loads = [
        asyncio.create_task(_paced(http, urls["ingest"], bodies[i::senders], background_rate // senders, stop))
        for i in range(senders)
    ]
    started = time.perf_counter()
    delays, run_delays = [], []
    for _ in range(probes):
        probe = demo_generations(1, days=0.001, seed=secrets.randbelow(10**6))
        name = f"probe-{secrets.token_hex(4)}"
        body = otlp_request([probe[0].__class__(**{**probe[0].__dict__, "app_version": name})])
        await _post(http, f"{urls['ingest']}/v1/traces", body)
        sent = time.perf_counter()
        seen = None
        while True:
            recent = {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 300))}
            rows = [r for r in await _versions(http, urls["aggregator"], recent) if r["version"] == name]
            if rows and seen is None:
                seen = time.perf_counter()
            if rows and rows[0]["run_count"]:  # the probe's run, counted once its root span is stored
                break
            await asyncio.sleep(0.01)
        assert seen is not None
        delays.append((seen - sent) * 1000)
        run_delays.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.1)
    stop.set()
    background = sum(await asyncio.gather(*loads)) / (time.perf_counter() - started)
    q = statistics.quantiles(delays, n=100)
    print(
        f"freshness under {background:,.0f} spans/s of background load (asked {background_rate:,}): "
        f"export→visible p50 {statistics.median(delays):.0f} ms, p99 {q[98]:.0f} ms over {probes} probes"
    )
    q = statistics.quantiles(run_delays, n=100)
    print(f"run freshness (export→the run counted): p50 {statistics.median(run_delays):.0f} ms, p99 {q[98]:.0f} ms")


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    token = secrets.token_hex(3)
    database = f"vane_bench_{token}"
    database_url = with_database(settings.database_url, database)
    _, keys = await migrated_project(database_url, "bench-pipeline")
    env = {
        "VANE_DATABASE_URL": database_url,
        "VANE_NATS_URL": settings.nats_url,
        "VANE_REDIS_URL": settings.redis_url,
        "VANE_NAMESPACE": f"benchp{token}",
        "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),
        "VANE_LOG_LEVEL": "warning",
        "VANE_INGEST_WORKERS": str(args.ingest_workers),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="vane-bench-"))
    services = {name: ServiceProcess(name, env, log_dir).start() for name in ("ingest", "aggregator")}
    rss = {name: PeakRss(p.proc.pid) for name, p in services.items() if p.proc is not None}
    urls = {name: p.url for name, p in services.items()}
    bus = await bus_for(settings, settings.nats_url, env["VANE_NAMESPACE"])
    evaluator_off = asyncio.create_task(_without_evaluator(bus))
    try:
        # The throughput load goes through RawPoster; probes and paced background load through aiohttp.
        auth = {"Authorization": f"Bearer {keys.secret_key}"}
        async with aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=30)) as http:
            cpu = CpuSplit({name: p.proc.pid for name, p in services.items() if p.proc is not None}, database)
            await throughput(http, urls, auth, args.spans, args.concurrency, args.bodies, cpu)
            await freshness(http, urls, args.probes, args.background_rate)
        for name, sampler in rss.items():
            print(f"peak RSS {name}: {sampler.stop():.0f} MB (with its worker processes)")
    finally:
        evaluator_off.cancel()
        for p in services.values():
            p.kill()
        await drop_streams(bus)
        await bus.close()
        await drop_database(database_url)
        print(f"logs in {log_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--background-rate", type=int, default=10_000, help="spans/s while freshness is probed")
    parser.add_argument("--ingest-workers", type=int, default=2)
    parser.add_argument("--bodies", choices=("realistic", "demo"), default="realistic")
    asyncio.run(main(parser.parse_args()))
