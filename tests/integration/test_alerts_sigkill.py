"""SIGKILL of the alert service between deciding and sending, and in the middle of a send: the
notification is delivered, and exactly once by webhook-id (a resend after the kill carries the same id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.aggregator_load import eventually
from tests.support.alert_receivers import ERRORS_RULE, FAST, SECRET, Receiver, failing_traffic, holds
from tests.support.processes import free_port

pytestmark = pytest.mark.slow


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
        await failing_traffic(pool, project.id, errors=40)

        async def tried() -> bool:
            attempts = await pool.fetchval("SELECT max(attempts) FROM alert_outbox WHERE project_id = $1", project.id)
            return bool(attempts and attempts >= 1)

        await eventually(tried, timeout=20)  # decided, committed, and the send failed: nobody listens
    alert.kill()
    receiver = await Receiver(holding=True).start(port)  # back, but it answers nothing for now
    try:
        alert.start()
        await eventually(lambda: holds(len(receiver.received) >= 1), timeout=20)
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
