"""Alert benchmark: one evaluation round of many rules over many versions' rollups, and the latency
from a decided transition to its signed webhook arriving at a local receiver.

    .venv/bin/python -m tests.bench.bench_alerts [--rules 10000] [--versions 1000] [--rounds 3]

Rules watch app versions (ten kinds of rule per version: thresholds on p95 latency, error rate,
median cost and tokens, change and anomaly conditions). Rollups hold ten minutes of traffic per
version. The evaluator and the sender run in this process (the service's own classes), so CPU and
memory are this process's. Uses the machine's Postgres with a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psutil

from services.aggregator.rollup import RollupKey
from services.alert.deliver import Sender
from services.alert.evaluate import Evaluator
from services.common import db
from services.common.settings import Settings
from tests.support.aggregator_load import eventually
from tests.support.alert_receivers import SECRET, Receiver, generations, roll_up
from tests.support.scratch import drop_database, migrated_project, with_database

NS_PER_MINUTE = 60_000_000_000


def rule_kinds(version: str, hook: str) -> list[dict[str, Any]]:
    channel = [{"type": "webhook", "url": hook, "secret": SECRET}]
    scope = {"app_version": version}
    base: dict[str, Any] = {"scope": scope, "window": "10m", "channels": channel}
    return [
        {
            **base,
            "name": "p95",
            "metric": "latency_ms",
            "statistic": "p95",
            "condition": {"op": "above", "threshold": 5e3},
        },
        {
            **base,
            "name": "p99",
            "metric": "latency_ms",
            "statistic": "p99",
            "condition": {"op": "above", "threshold": 8e3},
        },
        {**base, "name": "med", "metric": "latency_ms", "condition": {"op": "above", "threshold": 4e3}, "warning": 3e3},
        {**base, "name": "err", "metric": "error_rate", "condition": {"op": "above", "threshold": 0.2}},
        {**base, "name": "cost", "metric": "cost", "condition": {"op": "above", "threshold": 1.0}},
        {
            **base,
            "name": "tok",
            "metric": "total_tokens",
            "statistic": "total",
            "condition": {"op": "above", "threshold": 1e9},
        },
        {
            **base,
            "name": "vol",
            "metric": "latency_ms",
            "statistic": "count",
            "condition": {"op": "below", "threshold": 1},
        },
        {**base, "name": "ttft", "metric": "ttft_ms", "condition": {"op": "above", "threshold": 1e4}, "no_data": "ok"},
        {
            **base,
            "name": "chg",
            "metric": "latency_ms",
            "condition": {"op": "change", "pct": 300, "baseline_window": "1h"},
        },
        {**base, "name": "anom", "metric": "latency_ms", "statistic": "count", "condition": {"op": "anomaly"}},
    ]


async def setup(pool: Any, project: uuid.UUID, versions: int, rules: int, hook: str) -> None:
    rng = np.random.default_rng(1)
    now = time.time_ns()
    gens = []
    for v in range(versions):
        key = RollupKey("bench-app", f"v{v}", "support-reply", 1 + v % 5, "gpt-4o")
        at = [int(now - m * NS_PER_MINUTE) for m in rng.uniform(0.5, 9.5, 20)]
        gens += generations(project, at, rng.lognormal(6.5, 0.5, 20), key=key, errors=1)
    for i in range(0, len(gens), 4000):
        await roll_up(pool, gens[i : i + 4000])
    specs = []
    per_version = len(rule_kinds("v0", hook))
    for r in range(rules):
        spec = rule_kinds(f"v{(r // per_version) % versions}", hook)[r % per_version]
        spec["name"] = f"{spec['name']}-{r}"
        spec.setdefault("statistic", "rate" if spec["metric"] == "error_rate" else "median")
        spec.setdefault("for", "0s")
        spec.setdefault("min_samples", 1)
        spec.setdefault("severity", "warning")
        spec.setdefault("no_data", "ok")
        specs.append(spec)
    await pool.executemany(
        "INSERT INTO alert_rules (id, project_id, name, spec) VALUES ($1, $2, $3, $4::jsonb)",
        [(uuid.uuid4(), project, s["name"], json.dumps(s)) for s in specs],
    )


async def evaluation(pool: Any, settings: Settings, rounds: int) -> None:
    evaluator = Evaluator(pool, settings)
    me = psutil.Process()
    for i in range(rounds):
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        found = await evaluator.round(datetime.now(UTC), force=True)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
        print(
            f"round {i + 1}: {found.rules} rules in {found.seconds:.2f} s "
            f"({found.rules / found.seconds:,.0f} rules/s), "
            f"{found.transitions} transitions, {found.queued} notifications queued; "
            f"CPU {cpu_s:.2f} s, RSS {me.memory_info().rss / 2**20:.0f} MiB"
        )


async def _all_in(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


async def notification_latency(pool: Any, settings: Settings, project: uuid.UUID, receiver: Receiver, n: int) -> None:
    """n transitions decided at once (a threshold crossed by every rule): decided → webhook received."""
    await pool.execute(
        "UPDATE alert_rules SET spec = jsonb_set(spec, '{condition,threshold}', '0'), state = 'ok', "
        "evaluated_at = NULL WHERE id IN "
        "(SELECT id FROM alert_rules WHERE project_id = $1 AND spec->>'name' LIKE 'p95-%' LIMIT $2)",
        project,
        n,
    )
    sender = Sender(pool, settings)
    stopping = asyncio.Event()
    sending = asyncio.create_task(sender.run(stopping))
    receiver.received.clear()
    found = await Evaluator(pool, settings).round(datetime.now(UTC), force=True)
    await eventually(lambda: _all_in(receiver, found.queued), timeout=120, every=0.05)
    stopping.set()
    await sending
    events = {
        r["id"]: r["at"]
        for r in await pool.fetch("SELECT id, at FROM alert_events WHERE project_id = $1 AND state = 'firing'", project)
    }
    delays = []
    for r in receiver.received:
        body = r.json()["data"]
        arrived = datetime.fromtimestamp(r.arrived, UTC)
        delays.append((arrived - events[body["event_id"]]).total_seconds() * 1000)
    ms = np.array(delays)
    print(
        f"notifications: {len(ms)} of {found.queued} delivered; decided → received "
        f"p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms "
        f"(the round deciding them took {found.seconds:.2f} s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--notifications", type=int, default=500)
    args = parser.parse_args()
    settings = Settings.from_env()
    database = with_database(settings.database_url, f"vane_bench_alerts_{secrets.token_hex(4)}")
    project, _ = await migrated_project(database, "bench-alerts")
    settings = dataclasses.replace(settings, database_url=database, alert_retry_max_seconds=1.0)
    pool = await db.create_pool(database, 1, 10)
    receiver = await Receiver().start()
    try:
        began = time.perf_counter()
        await setup(pool, project, args.versions, args.rules, f"{receiver.url}/hook")
        print(f"setup: {args.versions} versions' rollups and {args.rules} rules in {time.perf_counter() - began:.1f} s")
        await evaluation(pool, settings, args.rounds)
        await notification_latency(pool, settings, project, receiver, args.notifications)
    finally:
        await receiver.stop()
        await pool.close()
        await drop_database(database)


if __name__ == "__main__":
    asyncio.run(main())
