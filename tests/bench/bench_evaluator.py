"""Evaluator benchmark: rule-based evaluations per second (the pure core, and end to end through a
`vane serve evaluator` process), and LLM-judge calls in flight against a local chat-completions
server that answers after 200 ms (the judge client alone, and the service).

    .venv/bin/python -m tests.bench.bench_evaluator [--spans 20000] [--judge-spans 3000]

Uses the machine's NATS and Postgres with a database and namespace of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from vane.v1 import bus_pb2

from services.common.bus import Bus, Topology
from services.common.settings import Settings
from services.evaluator.config import JudgeDefaults
from services.evaluator.judge import Judge
from services.evaluator.rules import RULES
from services.evaluator.selection import ProjectRule, plan
from services.evaluator.spans import SpanView
from tests.support.chat_completions import ChatCompletionsServer
from tests.support.processes import ServiceProcess
from tests.support.scratch import delete_streams, drop_database, migrated_project, with_database

RULE_SET = [
    {"evaluator": "is_json", "name": "is_json"},
    {"evaluator": "contains", "name": "mentions_refund", "config": {"value": "refund"}},
    {"evaluator": "regex", "name": "order_number", "config": {"pattern": r"#\d{4}"}},
    {"evaluator": "length", "name": "words", "config": {"unit": "words"}},
]
OUTPUT = json.dumps({"answer": "Your refund for order #1234 is on its way and should arrive in 5 business days."})


def core_rate(n: int) -> float:
    """Plans and rule evaluations per second in one process, no I/O."""
    rules = [ProjectRule(uuid.uuid4(), r["name"], r["evaluator"], config=r.get("config", {})) for r in RULE_SET]
    project = str(uuid.uuid4())
    spans = [
        SpanView(project, os.urandom(16), os.urandom(8), kind="llm", output=OUTPUT, input="Where is my refund?")
        for _ in range(n)
    ]
    started = time.perf_counter()
    count = 0
    for span in spans:
        for planned in plan(span, rules):
            RULES[planned.spec.name](planned.inputs, planned.config)
            count += 1
    return count / (time.perf_counter() - started)


async def judge_client_in_flight(server: ChatCompletionsServer, calls: int) -> tuple[int, float]:
    """Peak judge calls in flight and calls/s for `calls` concurrent judgements from one Judge client."""
    judge = Judge(JudgeDefaults(base_url=server.base_url("ok"), concurrency=512, rate_per_second=100_000, retries=0))
    inputs = {"input": "Where is my refund?", "output": OUTPUT}
    server.max_in_flight = 0
    started = time.perf_counter()
    await asyncio.gather(*(judge.judge("bench", inputs, {"rubric": "helpfulness"}) for _ in range(calls)))
    elapsed = time.perf_counter() - started
    await judge.close()
    return server.max_in_flight, calls / elapsed


class Stack:
    """A database and a namespace of the benchmark's own, and an evaluator process on them."""

    def __init__(self) -> None:
        settings = Settings.from_env()
        token = secrets.token_hex(4)
        self.database_url = with_database(settings.database_url, f"vane_bench_eval_{token}")
        self.nats_url = settings.nats_url
        self.namespace = f"be{token}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-evaluator-"))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "VANE_DATABASE_URL": self.database_url,
            "VANE_NATS_URL": self.nats_url,
            "VANE_NAMESPACE": self.namespace,
            "VANE_STREAM_MAX_BYTES": str(512 * 1024**2),
            "VANE_LOG_LEVEL": "warning",
            **extra,
        }

    async def drop(self) -> None:
        await delete_streams(self.nats_url, self.namespace)
        await drop_database(self.database_url)


async def count_scores(bus: Bus, want: int, deadline_seconds: float) -> tuple[int, float]:
    """Read new scores until `want` arrived; return (count, seconds). Start it before publishing."""
    sub = await bus.js.pull_subscribe(
        bus.topology.scores_subject,
        stream=bus.topology.scores_stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.NONE, inactive_threshold=120.0),
    )
    started = time.perf_counter()
    seen = 0
    while seen < want and time.perf_counter() - started < deadline_seconds:
        try:
            msgs = await sub.fetch(batch=2000, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        for msg in msgs:
            seen += len(bus_pb2.ScoreBatch.FromString(msg.data).scores)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return seen, elapsed


async def publish(bus: Bus, project_id: uuid.UUID, spans: int, per_message: int) -> None:
    async def one(count: int) -> None:
        batch = bus_pb2.SpanBatch(
            schema_version=1,
            project_id=str(project_id),
            spans=[
                bus_pb2.CanonicalSpan(
                    project_id=str(project_id),
                    trace_id=os.urandom(16),
                    span_id=os.urandom(8),
                    kind="llm",
                    app_version="bench",
                    input="Where is my refund?",
                    output=OUTPUT,
                )
                for _ in range(count)
            ],
        )
        await bus.publish(bus.topology.spans_subject, batch.SerializeToString(), msg_id=str(uuid.uuid4()))

    sizes = [per_message] * (spans // per_message) + ([spans % per_message] if spans % per_message else [])
    for at in range(0, len(sizes), 50):
        await asyncio.gather(*(one(n) for n in sizes[at : at + 50]))


async def service_rules(stack: Stack, bus: Bus, project_id: uuid.UUID, key: str, spans: int) -> None:
    proc = ServiceProcess("evaluator", stack.env(), stack.log_dir).start()
    try:
        async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}) as client:
            for rule in RULE_SET:
                (await client.post("/api/v1/evaluators", json=rule)).raise_for_status()
        want = spans * len(RULE_SET)
        counting = asyncio.create_task(count_scores(bus, want, 600))
        await asyncio.sleep(0.5)
        await publish(bus, project_id, spans, per_message=100)
        seen, elapsed = await counting
        print(f"service, rule-based: {seen} evaluations of {spans} spans in {elapsed:.1f} s = {seen / elapsed:,.0f}/s")
    finally:
        proc.terminate()


async def service_judge(
    stack: Stack, bus: Bus, project_id: uuid.UUID, key: str, server: ChatCompletionsServer, spans: int
) -> None:
    env = stack.env(
        VANE_JUDGE_BASE_URL=server.base_url("ok"),
        VANE_JUDGE_RATE_PER_SECOND="100000",  # the per-project limit would otherwise be what is measured
        VANE_EVALUATOR_MAX_IN_FLIGHT="512",
    )
    proc = ServiceProcess("evaluator", env, stack.log_dir).start()
    try:
        async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}) as client:
            judge_rule = {"evaluator": "llm_judge", "name": "helpfulness", "config": {"rubric": "helpfulness"}}
            (await client.post("/api/v1/evaluators", json=judge_rule)).raise_for_status()
        server.max_in_flight = 0
        before = sum(server.requests.values())
        counting = asyncio.create_task(count_scores(bus, spans * (1 + len(RULE_SET)), 600))
        await asyncio.sleep(0.5)
        await publish(bus, project_id, spans, per_message=50)
        seen, elapsed = await counting
        calls = sum(server.requests.values()) - before
        print(
            f"service, llm_judge at 200 ms: {calls} judge calls in {elapsed:.1f} s = {calls / elapsed:,.0f}/s, "
            f"peak in flight {server.max_in_flight} ({seen} scores in all)"
        )
    finally:
        proc.terminate()


async def main(spans: int, judge_spans: int) -> None:
    print(f"core, rule-based: {core_rate(20_000):,.0f} evaluations/s (plan + 4 rules per span, one process)")
    server = ChatCompletionsServer(latency=0.2).start()
    peak, rate = await judge_client_in_flight(server, 2000)
    print(f"judge client at 200 ms: 2000 calls, peak in flight {peak}, {rate:,.0f} calls/s")

    stack = Stack()
    project_id, keys = await migrated_project(stack.database_url, "bench")
    nc = await nats.connect(stack.nats_url)
    bus = Bus(nc, Topology(stack.namespace))
    try:
        await service_rules(stack, bus, project_id, keys.secret_key, spans)
        await service_judge(stack, bus, project_id, keys.secret_key, server, judge_spans)
    finally:
        await stack.drop()
        await nc.close()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20_000, help="spans for the rule-based run (4 rules each)")
    parser.add_argument("--judge-spans", type=int, default=3_000, help="spans for the judge run")
    args = parser.parse_args()
    asyncio.run(main(args.spans, args.judge_spans))
