"""Prompt registry benchmark: prints gRPC GetPrompt throughput and latency at 64 calls in flight,
the SDK's cached get_prompt time, and how long a label move takes to reach a watching SDK.

    .venv/bin/python -m tests.bench.bench_registry [--seconds 10] [--in-flight 64] [--workers 2]
        [--client h2load|python] [--clients 1]

It makes a database and a namespace of its own on the configured Postgres, NATS and Redis,
starts a real registry process (VANE_REGISTRY_WORKERS=--workers) on free ports, and removes what
it made when done. The load client shares the machine's cores with the server, so it should be
cheap: by default it is nghttp2's h2load (C; `apt-get install nghttp2-client`) speaking gRPC
framing over HTTP/2, else grpc.aio in separate processes. Each figure comes with the server's CPU
time per call and the client's share of the CPU the two used, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import secrets
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import psutil
import vane
from vane.v1 import prompts_pb2 as pb
from vane.v1 import prompts_pb2_grpc

from services.common.settings import Settings
from tests.support.processes import ServiceProcess, free_port, port_open
from tests.support.scratch import delete_redis_keys, delete_streams, drop_database, migrated_project, with_database

TARGETS = {"calls_per_second": 8_000, "p99_ms": 5.0, "cached_get_us": 5.0, "label_move_s": 1.0}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(address: str, secret: str, seconds: float, in_flight: int) -> tuple[int, list[float]]:
    """Keep `in_flight` GetPrompt calls going for `seconds`; return the count and latencies (ms)."""
    metadata = (("authorization", f"Bearer {secret}"),)
    request = pb.GetPromptRequest(name="bench", label="production")
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = prompts_pb2_grpc.PromptServiceStub(channel)
        for _ in range(200):  # warm: connection, caches, the interpreter's hot paths
            await stub.GetPrompt(request, metadata=metadata)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while (start := time.perf_counter()) < end:
                await stub.GetPrompt(request, metadata=metadata)
                latencies.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(latencies), latencies


def _load_process(address: str, secret: str, seconds: float, in_flight: int, out: multiprocessing.Queue) -> None:
    import uvloop

    out.put(uvloop.run(_load(address, secret, seconds, in_flight)))


async def _bare_server(port: int, payload: bytes) -> None:
    async def answer(request: pb.GetPromptRequest, context: object) -> bytes:
        return payload

    handler = grpc.unary_unary_rpc_method_handler(answer, request_deserializer=pb.GetPromptRequest.FromString)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("vane.v1.PromptService", {"GetPrompt": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _bare_server_process(port: int, payload: bytes) -> None:
    import uvloop

    uvloop.run(_bare_server(port, payload))


def grpc_ceiling(payload: bytes, args: argparse.Namespace) -> None:
    """The same load on a grpc.aio server that only returns fixed bytes: what this machine allows now."""
    port = free_port()
    server = multiprocessing.Process(target=_bare_server_process, args=(port, payload), daemon=True)
    server.start()
    while not port_open("127.0.0.1", port):
        time.sleep(0.05)
    try:
        assert server.pid is not None
        grpc_throughput(f"127.0.0.1:{port}", "none", [server.pid], args, label="bare grpc.aio ceiling (1 process)")
    finally:
        server.kill()


def _grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def _h2load(address: str, secret: str, args: argparse.Namespace, workdir: Path) -> tuple[int, list[float]]:
    """h2load as a gRPC client: POSTs of one framed GetPromptRequest; latencies from its request log."""
    body, log = workdir / "request.bin", workdir / "h2load.log"
    body.write_bytes(_grpc_frame(pb.GetPromptRequest(name="bench", label="production").SerializeToString()))
    log.unlink(missing_ok=True)
    connections = max(1, args.clients)
    command = ["h2load", "-D", str(round(args.seconds)), "--warm-up-time=1", "-t", "1", "-c", str(connections)]
    command += ["-m", str(max(1, args.in_flight // connections)), "-d", str(body), f"--log-file={log}"]
    command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    command += ["-H", f"authorization: Bearer {secret}", f"http://{address}/vane.v1.PromptService/GetPrompt"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if " 0 failed, 0 errored" not in out:
        raise SystemExit(f"h2load saw failures:\n{out}")
    latencies = [int(line.split()[2]) / 1000 for line in log.read_text().splitlines()]
    return len(latencies), latencies


def _python_clients(address: str, secret: str, args: argparse.Namespace) -> tuple[int, list[float]]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    per_client = max(1, args.in_flight // args.clients)
    procs = [
        multiprocessing.Process(target=_load_process, args=(address, secret, args.seconds, per_client, queue))
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), [x for r in results for x in r[1]]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        process = psutil.Process(pid)
        for p in [process, *process.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grpc_throughput(
    address: str, secret: str, server_pids: list[int], args: argparse.Namespace, label: str = "grpc GetPrompt"
) -> None:
    """Load the server with the chosen client; print calls/s, latency, server CPU per call, client share."""
    load_before = os.getloadavg()[0]
    server_before, client_before = _cpu_seconds(server_pids), _children_cpu_seconds()
    if args.client == "h2load":
        count, latencies = _h2load(address, secret, args, Path(tempfile.mkdtemp(prefix="vane-bench-h2-")))
    else:
        count, latencies = _python_clients(address, secret, args)
    server_cpu, client_cpu = _cpu_seconds(server_pids) - server_before, _children_cpu_seconds() - client_before
    rate = count / args.seconds
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    print(
        f"{label}: {rate:,.0f} calls/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms ({args.in_flight} in flight, "
        f"{args.client} client, {args.seconds:.0f} s, load average {load_before:.2f} before)"
    )
    print(
        f"  server CPU {server_cpu / max(1, count) * 1e6:.0f} us per call ({server_cpu / args.seconds:.2f} cores); "
        f"client {client_cpu / args.seconds:.2f} cores = {client_cpu / max(1e-9, client_cpu + server_cpu):.0%} "
        "of the CPU the two used"
    )
    if label.startswith("bare"):
        return
    print(
        f"  target >= {TARGETS['calls_per_second']:,} calls/s and p99 < {TARGETS['p99_ms']} ms: "
        f"{'met' if rate >= TARGETS['calls_per_second'] and p99 < TARGETS['p99_ms'] else 'NOT met'}"
    )


def _check_answer(address: str, secret: str) -> None:
    """The load client does not read gRPC statuses: make sure the call it repeats succeeds."""
    with grpc.insecure_channel(address) as channel:
        stub = prompts_pb2_grpc.PromptServiceStub(channel)
        answer = stub.GetPrompt(
            pb.GetPromptRequest(name="bench", label="production"), metadata=(("authorization", f"Bearer {secret}"),)
        )
        assert answer.prompt.name == "bench", answer


def cached_get(client: vane.Vane) -> None:
    client.get_prompt("bench", cache_ttl_seconds=3600)
    batch, means = 1000, []
    for _ in range(300):
        start = time.perf_counter_ns()
        for _ in range(batch):
            client.get_prompt("bench", cache_ttl_seconds=3600)
        means.append((time.perf_counter_ns() - start) / batch / 1000)
    median = statistics.median(means)
    print(
        f"sdk cached get_prompt: median {median:.2f} us per call (p99 of batch means {_percentile(means, 0.99):.2f} us)"
    )
    print(f"  target < {TARGETS['cached_get_us']} us: {'met' if median < TARGETS['cached_get_us'] else 'NOT met'}")


def label_move_delay(client: vane.Vane, http: httpx.Client, moves: int) -> None:
    assert client._prompt_watcher is not None and client._prompt_watcher.connected.wait(10)
    delays = []
    for i in range(moves):
        target = 2 if i % 2 == 0 else 1
        start = time.perf_counter()
        r = http.patch(f"/api/v1/prompts/bench-move/versions/{target}", json={"labels": ["production"]})
        r.raise_for_status()
        while client.get_prompt("bench-move", cache_ttl_seconds=3600).version != target:
            if time.perf_counter() - start > 10:
                raise SystemExit("a label move did not reach the SDK within 10 s")
            time.sleep(0.0005)
        delays.append(time.perf_counter() - start)
    print(
        f"label move -> watching sdk: median {statistics.median(delays) * 1000:.1f} ms, "
        f"max {max(delays) * 1000:.1f} ms over {moves} moves (from the HTTP request)"
    )
    print(f"  target < {TARGETS['label_move_s']} s: {'met' if max(delays) < TARGETS['label_move_s'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes (python) or connections (h2load)")
    default_client = "h2load" if shutil.which("h2load") else "python"
    parser.add_argument("--client", choices=["h2load", "python"], default=default_client)
    parser.add_argument("--workers", type=int, default=2, help="VANE_REGISTRY_WORKERS of the registry under load")
    parser.add_argument("--skip-ceiling", action="store_true", help="do not measure the bare grpc.aio server")
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args()

    settings = Settings.from_env()
    token = secrets.token_hex(4)
    database_url = with_database(settings.database_url, f"vane_bench_{token}")
    namespace = f"b{token}"
    secret = asyncio.run(migrated_project(database_url, "bench"))[1].secret_key
    env = {
        "VANE_DATABASE_URL": database_url,
        "VANE_NATS_URL": settings.nats_url,
        "VANE_REDIS_URL": settings.redis_url,
        "VANE_NAMESPACE": namespace,
        "VANE_STREAM_MAX_BYTES": str(64 * 1024**2),
        "VANE_LOG_LEVEL": "warning",
        "VANE_REGISTRY_WORKERS": str(args.workers),
    }
    registry = ServiceProcess("registry", env, Path(tempfile.mkdtemp(prefix="vane-bench-")))
    try:
        registry.start()
        address = f"127.0.0.1:{registry.grpc_port}"
        client = vane.Vane(secret_key=secret, registry=address)
        with httpx.Client(base_url=registry.url, headers={"Authorization": f"Bearer {secret}"}, timeout=10) as http:
            for prompt, labels in (("bench", ["production"]), ("bench-move", ["production"]), ("bench-move", [])):
                body = {"name": prompt, "prompt": "Hello {{name}}, " * 20, "config": {"model": "gpt-4o"}}
                http.post("/api/v1/prompts", json={**body, "labels": labels}).raise_for_status()
            assert registry.proc is not None
            _check_answer(address, secret)
            label = f"grpc GetPrompt ({args.workers} workers)"
            grpc_throughput(address, secret, [registry.proc.pid], args, label=label)
            served = http.get("/api/v1/prompts/bench").json()
            payload = pb.GetPromptResponse(
                prompt=pb.PromptVersion(name="bench", version=served["version"], text=served["prompt"])
            ).SerializeToString()
            if not args.skip_ceiling:
                grpc_ceiling(payload, args)
            cached_get(client)
            label_move_delay(client, http, args.moves)
        client.close()
    finally:
        registry.terminate()
        asyncio.run(drop_database(database_url))
        asyncio.run(delete_streams(settings.nats_url, namespace))
        asyncio.run(delete_redis_keys(settings.redis_url, namespace))


if __name__ == "__main__":
    main()
