"""Getting notifications out: regressions and rollbacks from the bus as firing events; a real
Alertmanager (Debian's) holds Vane's alert while it fires and drops it once resolved; two replicas
fire each rule once; a failing receiver gets its notification at its first 2xx, and a channel that
never answers is disabled with an event."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.bus import Bus
from tests.conftest import Infra
from tests.support.aggregator_load import eventually
from tests.support.alert_receivers import (
    ERRORS_RULE,
    FAST,
    SECRET,
    Alertmanager,
    Receiver,
    alertmanager_binary,
    failing_traffic,
    holds,
)
from tests.support.processes import ServiceProcess, free_port

# The module's shared service: Alertmanager re-posts every second, a channel failing 8 s is disabled.
SHARED = {**FAST, "VANE_ALERT_RESEND_SECONDS": "1", "VANE_ALERT_CHANNEL_DISABLE_AFTER_SECONDS": "8"}


@pytest.fixture(scope="module")
def alert(infra: Infra) -> Iterator[ServiceProcess]:
    """One alert service for the tests that do not kill it: each test has a project of its own."""
    proc = ServiceProcess("alert", infra.env(**SHARED), infra.log_dir).start()
    yield proc
    proc.kill()


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
    make_project: Callable[..., Any], alert: ServiceProcess, run_bus: Bus, receiver: Receiver
) -> None:
    bus = run_bus
    project = await make_project()
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
    dead = await bus.js.get_last_msg(
        bus.topology.dead_letter_stream, subject=bus.topology.dead_letter_subject(bus.topology.decisions_stream)
    )
    assert dead.data == b"{not a decision" and dead.headers and "not a decision" in dead.headers["Vane-Dead-Reason"]


async def test_alertmanager_holds_the_alert_while_it_fires_and_drops_it_once_resolved(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, alertmanager_bin: str, tmp_path: Path
) -> None:
    manager = Alertmanager(alertmanager_bin, tmp_path, free_port())
    try:
        project = await make_project()
        async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
            rule = {
                **ERRORS_RULE,
                "name": "vane errors",
                "severity": "critical",
                "scope": {"app_version": "v1"},
                "channels": [{"type": "alertmanager", "url": manager.url}],
            }
            rule_id = (await client.post("/api/v1/alerts/rules", json=rule)).json()["id"]
            await failing_traffic(pool, project.id, errors=40)

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
            await eventually(lambda: holds(bool(ours()) and ours()[0]["endsAt"] > firing["endsAt"]), timeout=20)

            await failing_traffic(pool, project.id, errors=0, n=3000)  # errors drown in good traffic: resolved
            await eventually(lambda: holds(not ours()), timeout=30)
            events = (await client.get("/api/v1/alerts/events", params={"rule": rule_id})).json()["events"]
            assert [e["state"] for e in events] == ["resolved", "firing"]
    finally:
        manager.stop()


async def test_two_replicas_fire_each_rule_once(
    make_project: Callable[..., Any],
    alert: ServiceProcess,
    start_service: Callable[..., Any],
    pool: Any,
    receiver: Receiver,
) -> None:
    project = await make_project()
    replicas = [alert, start_service("alert", **SHARED)]
    async with httpx.AsyncClient(base_url=replicas[0].url, headers=project.bearer) as client:
        hook = [{"type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET}]
        for i in range(20):
            rule = {**ERRORS_RULE, "name": f"errors {i}", "channels": hook}
            (await client.post("/api/v1/alerts/rules", json=rule)).raise_for_status()
        await failing_traffic(pool, project.id, errors=40)
        await eventually(lambda: holds(len(receiver.at("/hook")) >= 20), timeout=30)
        await asyncio.sleep(2.0)  # rounds of both replicas go on: none fires a rule again
        events = (await client.get("/api/v1/alerts/events")).json()["events"]
    assert len(events) == 20 and {e["state"] for e in events} == {"firing"}
    assert len({e["rule"] for e in events}) == 20
    assert len(receiver.webhook_ids()) == 20 and len(set(receiver.webhook_ids())) == 20


async def test_a_failing_receiver_gets_its_notification_at_its_first_2xx_and_a_dead_channel_is_disabled(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any
) -> None:
    project = await make_project()
    flaky = await Receiver(fail_first=3).start()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing ever listens here
    try:
        async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
            channels = [
                {"type": "webhook", "url": f"{flaky.url}/hook", "secret": SECRET},
                {"type": "webhook", "url": dead, "secret": SECRET},
            ]
            (await client.post("/api/v1/alerts/rules", json={**ERRORS_RULE, "channels": channels})).raise_for_status()
            await failing_traffic(pool, project.id, errors=40)

            async def disabled() -> list[dict[str, Any]]:
                found = await client.get("/api/v1/alerts/events", params={"kind": "channel_disabled"})
                return list(found.json()["events"])

            event = (await eventually(disabled, timeout=40))[0]
            assert dead in event["body"]["message"]
        assert len(flaky.received) == 4 and len(set(flaky.webhook_ids())) == 1  # three 503s, then a 200
        rows = await pool.fetch(
            "SELECT channel->>'url' AS url, attempts, delivered_at, abandoned_at FROM alert_outbox "
            "WHERE project_id = $1",
            project.id,
        )
        by_url = {r["url"]: r for r in rows}
        assert by_url[f"{flaky.url}/hook"]["delivered_at"] is not None and by_url[f"{flaky.url}/hook"]["attempts"] == 4
        assert by_url[dead]["delivered_at"] is None and by_url[dead]["abandoned_at"] is not None
    finally:
        await flaky.stop()
