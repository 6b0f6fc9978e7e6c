"""Spans per second through ingest into JetStream, with ingest's CPU and memory.

Several concurrent OTLP/HTTP clients send pre-encoded requests of 512 realistic generation spans
to a real `vane serve ingest` on the machine's NATS and Postgres, in a database and namespace of
its own. Each request sent is made unique by its first trace id, so JetStream's de-duplication
never short-cuts the work and the stream stores every one; the stream's consumers are drained
(fetched and acked, as the aggregator and evaluator would), since a full work stream refuses new
messages; a 503 is retried after its Retry-After, as OTLP exporters do. `--repeat` resends 64
bodies instead, which JetStream stores once each: ingest's own throughput, without the storage.

    .venv/bin/python -m tests.bench.bench_ingest [--seconds 20] [--clients 8] [--workers 2] [--repeat]

`--pure` measures the pure path alone, in this process, without a server: decode + normalise +
price + encode, the CPU microseconds one span costs (best of several rounds, as other work on
the machine only ever adds time), and the same with cProfile's top functions with `--profile`.
It runs the C accelerator when it is built; `--python` measures the Python reference path instead.

    .venv/bin/python -m tests.bench.bench_ingest --pure [--rounds 10] [--profile] [--python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import secrets
import tempfile
import time
from pathlib import Path

import httpx
import nats
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from services.common.bus import Topology
from services.common.settings import Settings
from tests.support.processes import ServiceProcess
from tests.support.scratch import delete_streams, drop_database, migrated_project, with_database

SPANS_PER_REQUEST = 512
RETRIES = [0]  # 503 answers (JetStream did not acknowledge in time), each retried after Retry-After
QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I change the delivery address?"]


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def template() -> ExportTraceServiceRequest:
    """One request of generation spans as an OpenTelemetry GenAI + traceAI client sends them."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(
        [
            _kv("service.name", "support-bot"),
            _kv("project_name", "support-bot"),
            _kv("project_type", "experiment"),
            _kv("project_version_name", "gpt-4o-concise-prompt"),
            _kv("eval_tags", '[{"type":"OBSERVATION_SPAN_TYPE","value":"LLM","eval_name":"is_json","mapping":{}}]'),
        ]
    )
    scope = resource.scope_spans.add()
    now = time.time_ns()
    for i in range(SPANS_PER_REQUEST):
        question = QUESTIONS[i % len(QUESTIONS)]
        # as a batch exporter sends them: started over the last few seconds, log-normal latencies (~0.8 s)
        start = now - random.randint(0, 5_000_000_000)
        latency = int(random.lognormvariate(20.5, 0.5))
        span = scope.spans.add(
            name="chat gpt-4o", kind=3, start_time_unix_nano=start, end_time_unix_nano=start + latency
        )
        span.attributes.extend(
            [
                _kv("gen_ai.operation.name", "chat"),
                _kv("gen_ai.system", "openai"),
                _kv("gen_ai.request.model", "gpt-4o"),
                _kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
                _kv("gen_ai.request.temperature", 0.2),
                _kv("gen_ai.usage.input_tokens", random.randint(200, 1500)),
                _kv("gen_ai.usage.output_tokens", random.randint(20, 400)),
                _kv("gen_ai.prompt.template.name", "support-reply"),
                _kv("gen_ai.prompt.template.version", 3),
                _kv("gen_ai.server.time_to_first_token", random.uniform(80, 600)),
                _kv("session.id", f"session-{i % 50}"),
                _kv(
                    "input.value",
                    f'[{{"role":"system","content":"You are a concise support agent."}},'
                    f'{{"role":"user","content":"{question}"}}]',
                ),
                _kv("output.value", "Thanks for reaching out. " + "Here is what you can do next. " * 6),
            ]
        )
        span.status.code = 1
    return request


def unique_bodies(count: int) -> list[bytes]:
    """Requests with unique ids, and unique inputs and outputs as real conversations have."""
    base = template()
    spans = base.resource_spans[0].scope_spans[0].spans
    bodies = []
    for _ in range(count):
        for span in spans:
            span.trace_id = os.urandom(16)
            span.span_id = os.urandom(8)
            order = span.trace_id[:4].hex()
            for kv in span.attributes:
                if kv.key == "input.value":
                    kv.value.string_value = kv.value.string_value.split(" (order ")[0] + f" (order {order})"
                elif kv.key == "output.value":
                    kv.value.string_value = f"Order {order}: " + kv.value.string_value.split(": ", 1)[-1]
        bodies.append(base.SerializeToString())
    return bodies


def pure_path(rounds: int, profile: bool, python: bool) -> None:
    """CPU per span of decode → normalise → price → encode, in this process."""
    from services.ingest import canonical, decode
    from services.ingest.intake import prepare
    from services.ingest.pricing import BUILTIN

    if python:  # the reference path: no accelerator
        canonical.ACCELERATOR = None
    project = "8d6f1c9e-6a55-4f7e-9d2b-3f1f4f3f0a11"
    bodies = unique_bodies(8)

    def one_round() -> int:
        return sum(prepare(decode.decode_protobuf(body), project, (BUILTIN,), 8 << 20)[0] for body in bodies)

    one_round()  # warm caches of prices and imports
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        spans = one_round()
        best = min(best, (time.process_time() - started) / spans)
    size = len(bodies[0])
    path = "C accelerator" if canonical.ACCELERATOR is not None else "Python reference"
    print(f"pure path ({path}), one process: {size / 1024:.0f} KiB requests of {SPANS_PER_REQUEST} spans")
    print(f"CPU per span, best of {rounds} rounds of {spans} spans: {best * 1e6:.1f} µs")
    print(f"  → {1 / best:,.0f} spans/s per core")
    print(f"machine load average: {os.getloadavg()[0]:.1f}")
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(one_round)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def first_trace_id_at(body: bytes) -> int:
    """Where the request's first trace id lies in its bytes."""
    request = ExportTraceServiceRequest.FromString(body)
    return body.index(request.resource_spans[0].scope_spans[0].spans[0].trace_id)


async def client_loop(
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    stop_at: float,
    start: int,
    sends: itertools.count[int] | None,
) -> int:
    sent = 0
    index = start
    offsets = [first_trace_id_at(body) for body in bodies]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as client:
        while time.monotonic() < stop_at:
            body = bytearray(bodies[index % len(bodies)])
            at = offsets[index % len(bodies)]
            if sends is not None:
                body[at : at + 8] = next(sends).to_bytes(8, "big")  # a request no earlier one repeats
            response = await client.post(url, content=bytes(body), headers=headers)
            while response.status_code == 503 and time.monotonic() < stop_at:  # as an OTLP exporter retries
                RETRIES[0] += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                response = await client.post(url, content=bytes(body), headers=headers)
            if response.status_code == 503:
                break
            if response.status_code != 200:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")
            sent += SPANS_PER_REQUEST
            index += 1
    return sent


async def drain(nats_url: str, stream: str, stop_at: float) -> int:
    """Ack every message of the stream's consumers until `stop_at`: a work stream keeps what they
    have not acked, and refuses new messages when full."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    acked = 0
    try:
        subscriptions = [
            await js.pull_subscribe_bind(durable=info.name, stream=stream) for info in await js.consumers_info(stream)
        ]
        while time.monotonic() < stop_at:
            for subscription in subscriptions:
                with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                    for msg in await subscription.fetch(64, timeout=0.2):
                        await msg.ack()
                        acked += 1
    finally:
        await nc.close()
    return acked


def processes(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def run(seconds: float, clients: int, workers: int, repeat: bool) -> None:
    settings = Settings.from_env()
    token = secrets.token_hex(4)
    database_url = with_database(settings.database_url, f"vane_bench_{token}")
    namespace = f"bench{token}"
    _, keys = await migrated_project(database_url, "bench")
    env = {
        "VANE_DATABASE_URL": database_url,
        "VANE_NAMESPACE": namespace,
        "VANE_STREAM_MAX_BYTES": str(256 * 1024**2),  # the shared server reserves it up front; old messages go
        "VANE_INGEST_WORKERS": str(workers),
        "VANE_LOG_LEVEL": "warning",
    }
    print(f"pre-encoding requests of {SPANS_PER_REQUEST} spans …", flush=True)
    bodies = unique_bodies(64)
    size = len(bodies[0])
    print(f"  {len(bodies)} requests, {size / 1024:.0f} KiB each ({size / SPANS_PER_REQUEST:.0f} B/span)")
    ingest = ServiceProcess("ingest", env, Path(tempfile.mkdtemp()))
    try:
        ingest.start()
        assert ingest.proc is not None
        root = psutil.Process(ingest.proc.pid)
        await asyncio.sleep(2.0)  # let the worker processes come up
        procs = processes(root)
        url = f"{ingest.url}/v1/traces"
        headers = {"Authorization": f"Bearer {keys.secret_key}", "Content-Type": "application/x-protobuf"}
        # warm up: caches of keys and prices, connections
        sends = None if repeat else itertools.count(1 << 62)
        stream = Topology(namespace).spans_stream
        drainer = asyncio.create_task(drain(settings.nats_url, stream, time.monotonic() + seconds + 8.0))
        await client_loop(url, headers, bodies, time.monotonic() + 2.0, 0, sends)
        cpu_before = cpu_seconds(procs)
        me = psutil.Process()
        client_before = cpu_seconds([me])
        started = time.monotonic()
        stop_at = started + seconds
        counts = await asyncio.gather(
            *(client_loop(url, headers, bodies, stop_at, i * 7, sends) for i in range(clients))
        )
        elapsed = time.monotonic() - started
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
        cpu = cpu_seconds(procs) - cpu_before
        client_cpu = cpu_seconds([me]) - client_before
        rss = [p.memory_info().rss / 1024**2 for p in procs]
        spans = sum(counts)
        nc = await nats.connect(settings.nats_url)
        info = await nc.jetstream().stream_info(Topology(namespace).spans_stream)
        await nc.close()
        print(f"ingest workers: {workers}, clients: {clients}, seconds: {elapsed:.1f}")
        print(f"spans acknowledged (durable in JetStream): {spans}  →  {spans / elapsed:,.0f} spans/s")
        print(f"requests: {spans // SPANS_PER_REQUEST} → {spans / SPANS_PER_REQUEST / elapsed:,.1f} req/s")
        stored = info.state.last_seq
        print(f"JetStream messages stored in the spans stream: {stored}; 503s retried: {RETRIES[0]}")
        print(f"ingest CPU: {cpu:.1f} s over {elapsed:.1f} s = {cpu / elapsed:.2f} cores")
        print(f"ingest CPU per span (all of it, HTTP to publish): {cpu / spans * 1e6:.1f} µs")
        print(f"ingest RSS per process (MB): {', '.join(f'{r:.0f}' for r in rss)}")
        print(f"bench client CPU: {client_cpu / elapsed:.2f} cores; machine load average: {os.getloadavg()[0]:.1f}")
    finally:
        ingest.kill()
        await delete_streams(settings.nats_url, namespace)
        await drop_database(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pure", action="store_true", help="the pure path in this process, no server")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--repeat", action="store_true", help="resend the same bodies: JetStream stores each once")
    parser.add_argument("--python", action="store_true", help="with --pure: the Python reference path, not C")
    args = parser.parse_args()
    if args.pure:
        pure_path(args.rounds, args.profile, args.python)
    else:
        asyncio.run(run(args.seconds, args.clients, args.workers, args.repeat))


if __name__ == "__main__":
    main()
