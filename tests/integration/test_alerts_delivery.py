"""Getting notifications out: regressions and rollbacks from the bus as firing events; SIGKILL of the
alert service between deciding and sending, and in the middle of a send, delivers exactly once by
webhook-id; a real Alertmanager (Debian's) holds Vane's alert while it fires and drops it once resolved."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually
from tests.support.alert_receivers import (
    SECRET,
    Alertmanager,
    Receiver,
    alertmanager_binary,
    generations,
    roll_up,
)
from tests.support.processes import free_port

NS_PER_MINUTE = 60_000_000_000
FAST = {
    "VANE_ALERT_EVALUATE_SECONDS": "0.5",
    "VANE_ALERT_RETRY_MAX_SECONDS": "1",
    "VANE_ALERT_SEND_TIMEOUT_SECONDS": "1",  # a sender's lease (3x this) runs out 3 s after it was killed
    "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),
}
ERRORS_RULE = {
    "name": "errors",
    "metric": "error_rate",
    "condition": {"op": "above", "threshold": 0.1},
    "window": "10m",
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    found = alertmanager_binary()
    if found is None:
        pytest.skip("prometheus-alertmanager is not installed and apt-get could not install it (not root, or no apt)")
    return found


async def _failing(pool: Any, project_id: Any, errors: int, n: int = 100) -> None:
    rng = np.random.default_rng(errors)
    now = time.time_ns()
    at = [int(now - m * NS_PER_MINUTE) for m in rng.uniform(1, 4, n)]
    await roll_up(pool, generations(project_id, at, rng.uniform(100, 200, n), errors=errors))


def _decision(project_id: Any, kind: str = "regression", **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "project_id": str(project_id),
        "id": f"{kind}-{secrets.token_hex(4)}",
        "prompt": "support-reply",
        "label": "production",
        "from_version": 2,
        "to_version": 3,
        "metric": "latency_ms",
        "detected_at": datetime.now(UTC).isoformat(),
        "comparison": {
            "metric": "latency_ms",
            "statistic": "median",
            "better": "lower",
            "a": {"n": 400, "estimate": 800.0},
            "b": {"n": 250, "estimate": 1100.0},
            "difference": 300.0,
            "relative_difference": 0.375,
            "ci95": [210.0, 390.0],
            "p_value": 1e-9,
            "test": "mann_whitney_u",
            "verdict": "b_worse",
            "samples_needed": None,
        },
        **extra,
    }


async def test_regressions_and_rollbacks_from_the_bus_fire_once_to_the_matching_rules_channels(
    make_project: Callable[..., Any],
    start_service: Callable[..., Any],
    bus: Bus,
    namespace: str,
    receiver: Receiver,
) -> None:
    project = await make_project()
    alert = start_service("alert", VANE_NAMESPACE=namespace, **FAST)
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        hook = {"type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET}
        for scope, channel in [
            ({"prompt": "support-reply"}, hook),
            ({"prompt": "support-reply", "label": "production"}, hook),  # the same channel: sent once
            ({"prompt": "another-prompt"}, {"type": "slack", "url": f"{receiver.url}/other"}),
        ]:
            rule = {**ERRORS_RULE, "scope": scope, "channels": [channel]}
            (await client.post("/api/v1/alerts/rules", json=rule)).raise_for_status()
        regression = _decision(project.id)
        topology = bus.topology
        for _ in range(2):  # a redelivered decision is the same decision
            await bus.publish(topology.decisions_subject("regression"), json.dumps(regression).encode())
        await bus.publish(topology.decisions_subject("regression"), b"{not a decision")
        rollback = _decision(project.id, "rollback", reason="guardrail latency_ms regressed at step 25")
        await bus.publish(topology.decisions_subject("rollback"), json.dumps(rollback).encode())

        async def both_sent() -> bool:
            return len(receiver.at("/hook")) >= 2

        await eventually(both_sent, timeout=20)
        events = (await client.get("/api/v1/alerts/events", params={"state": "firing"})).json()["events"]
        assert sorted(e["kind"] for e in events) == ["regression", "rollback"]
        assert {e["severity"] for e in events} == {"warning", "critical"}
    await asyncio.sleep(1.0)  # time for a duplicate to show up, were one sent
    hooks = receiver.at("/hook")
    assert len(hooks) == 2 and all(h.verified for h in hooks) and receiver.at("/other") == []
    bodies = {h.json()["type"]: h.json()["data"] for h in hooks}
    assert set(bodies) == {"regression.firing", "rollback.firing"}
    assert bodies["regression.firing"]["decision"]["comparison"]["verdict"] == "b_worse"
    assert bodies["rollback.firing"]["decision"]["reason"].startswith("guardrail")
    dead = await bus.js.stream_info(bus.topology.dead_letter_stream)
    assert dead.state.messages == 1


async def test_sigkill_between_deciding_and_sending_and_mid_send_delivers_exactly_once_by_webhook_id(
    make_project: Callable[..., Any], start_service: Callable[..., Any], pool: Any
) -> None:
    project = await make_project()
    port = free_port()  # the receiver is down when the rule fires
    alert = start_service("alert", **FAST)
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        rule = {
            **ERRORS_RULE,
            "channels": [{"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}],
        }
        rule_id = (await client.post("/api/v1/alerts/rules", json=rule)).json()["id"]
        await _failing(pool, project.id, errors=40)

        async def tried() -> bool:
            attempts = await pool.fetchval("SELECT max(attempts) FROM alert_outbox WHERE project_id = $1", project.id)
            return bool(attempts and attempts >= 1)

        await eventually(tried, timeout=20)  # decided, committed, and the send failed: nobody listens
    alert.kill()
    receiver = await Receiver(holding=True).start(port)  # back, but it answers nothing for now
    try:
        alert.start()
        await eventually(lambda: _true(len(receiver.received) >= 1), timeout=20)
        alert.kill()  # while the request is in flight: sent, never marked as delivered
        receiver.release()
        alert.start()

        async def delivered() -> bool:
            done = await pool.fetchval(
                "SELECT count(*) FROM alert_outbox WHERE project_id = $1 AND delivered_at IS NOT NULL", project.id
            )
            return bool(done == 1)

        await eventually(delivered, timeout=30)
        queued = await pool.fetch("SELECT id FROM alert_outbox WHERE project_id = $1", project.id)
        assert len(queued) == 1
        ids = receiver.webhook_ids()
        assert len(ids) >= 2 and set(ids) == {queued[0]["id"]}  # resent after the kill, under the same id
        assert all(r.verified for r in receiver.received)
        async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
            events = (await client.get("/api/v1/alerts/events", params={"rule": rule_id})).json()["events"]
        assert [e["state"] for e in events] == ["firing"]
    finally:
        await receiver.stop()


async def _true(value: bool) -> bool:
    return value


async def test_alertmanager_holds_the_alert_while_it_fires_and_drops_it_once_resolved(
    make_project: Callable[..., Any],
    start_service: Callable[..., Any],
    pool: Any,
    alertmanager_bin: str,
    tmp_path: Path,
) -> None:
    manager = Alertmanager(alertmanager_bin, tmp_path, free_port())
    try:
        project = await make_project()
        alert = start_service("alert", VANE_ALERT_RESEND_SECONDS="1", **FAST)
        async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
            rule = {
                **ERRORS_RULE,
                "name": "vane errors",
                "severity": "critical",
                "scope": {"app_version": "v1"},
                "channels": [{"type": "alertmanager", "url": manager.url}],
            }
            rule_id = (await client.post("/api/v1/alerts/rules", json=rule)).json()["id"]
            await _failing(pool, project.id, errors=40)

            def ours() -> list[dict[str, Any]]:
                return [a for a in manager.alerts() if a["labels"].get("rule") == rule_id]

            async def listed() -> list[dict[str, Any]]:
                return ours()

            firing = (await eventually(listed, timeout=30))[0]
            assert firing["status"]["state"] == "active"
            assert firing["labels"]["alertname"] == "vane errors" and firing["labels"]["severity"] == "critical"
            assert firing["labels"]["app_version"] == "v1" and firing["labels"]["vane_project"] == str(project.id)
            assert "vane errors" in firing["annotations"]["summary"]
            assert firing["generatorURL"].endswith(f"/api/v1/alerts/events?rule={rule_id}")
            # re-posted before its endsAt runs out, as Prometheus does: endsAt moves on
            await eventually(lambda: _true(bool(ours()) and ours()[0]["endsAt"] > firing["endsAt"]), timeout=20)

            await _failing(pool, project.id, errors=0, n=3000)  # errors drown in good traffic: resolved
            await eventually(lambda: _true(not ours()), timeout=30)
            events = (await client.get("/api/v1/alerts/events", params={"rule": rule_id})).json()["events"]
            assert [e["state"] for e in events] == ["resolved", "firing"]
    finally:
        manager.stop()
