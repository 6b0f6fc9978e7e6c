"""The sender: takes due notifications from the outbox and delivers them, until each gets a 2xx.

A row is leased before it is sent (one short transaction), so replicas never send one at the same
time; delivered, it is marked so; failed, it is due again after an exponential backoff with full
jitter (AWS's "Exponential Backoff and Jitter"), capped at VANE_ALERT_RETRY_MAX_SECONDS. A sender
killed between the send and the mark leaves the lease to run out: the row is sent again with the
same webhook-id, which is what receivers deduplicate on (at-least-once, exactly once by id).

A channel that has failed without a success for VANE_ALERT_CHANNEL_DISABLE_AFTER_SECONDS is
disabled: its queued notifications are abandoned and a `channel_disabled` event says so. Saving a
rule that names the channel enables it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.aggregator.store import Conn
from services.alert import channels, notify
from services.common.logs import get_logger
from services.common.settings import Settings

log = get_logger(component="alert-deliver")

SEND_BATCH = 64
IDLE_SECONDS = 0.2
# Sent (or abandoned) notifications are kept this long for inspection, then pruned, every PRUNE_SECONDS.
KEEP_SENT_DAYS = 7
PRUNE_SECONDS = 600.0
BASE_BACKOFF_SECONDS = 1.0
_CLAIM = """
UPDATE alert_outbox SET lease_until = $1, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM alert_outbox
    WHERE delivered_at IS NULL AND abandoned_at IS NULL AND due_at <= $2 AND (lease_until IS NULL OR lease_until <= $2)
    ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING id, project_id, channel::text AS channel, channel_key, body::text AS body, attempts
"""


def backoff(attempts: int, cap: float) -> float:
    """Seconds before the next attempt: uniform in [0, min(cap, base·2^(attempts−1))], at least 0.1."""
    ceiling = min(cap, BASE_BACKOFF_SECONDS * 2 ** min(attempts - 1, 30))
    return max(0.1, random.uniform(0, ceiling))


class Sender:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=settings.alert_send_timeout_seconds)
        # Longer than an attempt can take: a lease runs out only when its sender died.
        self.lease_seconds = 3 * settings.alert_send_timeout_seconds

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        pruned_at = loop.time()
        try:
            while not stopping.is_set():
                try:
                    if loop.time() - pruned_at >= PRUNE_SECONDS:
                        pruned_at = loop.time()
                        await self.prune()
                    sent = await self.round()
                except Exception as exc:  # Postgres away: try again shortly
                    log.warning("delivery_round_failed", error=str(exc))
                    sent = 0
                if not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), IDLE_SECONDS)
        finally:
            await self.client.aclose()

    async def prune(self) -> None:
        await self.pool.execute(
            "DELETE FROM alert_outbox WHERE coalesce(delivered_at, abandoned_at) < now() - make_interval(days => $1)",
            KEEP_SENT_DAYS,
        )

    async def round(self) -> int:
        """Send what is due now; the number of attempts made."""
        now = datetime.now(UTC)
        rows = await self.pool.fetch(_CLAIM, now + timedelta(seconds=self.lease_seconds), now, SEND_BATCH)
        await asyncio.gather(*(self._send(r) for r in rows))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> None:
        channel, body = json.loads(row["channel"]), json.loads(row["body"])
        now = datetime.now(UTC)
        url, data, headers = channels.request(channel, row["id"], body, now, self.settings.alert_resend_seconds)
        try:
            response = await self.client.post(url, content=data, headers=headers)
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}: {response.text[:200]}"
        except Exception as exc:  # refused, timed out, a URL the client will not take: all retried
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            await self._delivered(row)
        else:
            await self._failed(row, channel, error)

    async def _delivered(self, row: asyncpg.Record) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE alert_outbox SET delivered_at = now(), lease_until = NULL, last_error = '' WHERE id = $1",
                row["id"],
            )
            await conn.execute(
                "UPDATE alert_channels SET failing_since = NULL WHERE project_id = $1 AND channel_key = $2",
                row["project_id"],
                row["channel_key"],
            )
        log.info("notification_delivered", webhook_id=row["id"], attempts=row["attempts"])

    async def _failed(self, row: asyncpg.Record, channel: dict[str, Any], error: str) -> None:
        pause = backoff(row["attempts"], self.settings.alert_retry_max_seconds)
        log.warning("notification_failed", webhook_id=row["id"], attempts=row["attempts"], error=error, retry_in=pause)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE alert_outbox SET due_at = now() + make_interval(secs => $2), lease_until = NULL, "
                "last_error = $3 WHERE id = $1",
                row["id"],
                pause,
                error,
            )
            failing_since = await conn.fetchval(
                "INSERT INTO alert_channels (project_id, channel_key, failing_since) VALUES ($1, $2, now()) "
                "ON CONFLICT (project_id, channel_key) DO UPDATE SET failing_since = "
                "coalesce(alert_channels.failing_since, now()) RETURNING failing_since",
                row["project_id"],
                row["channel_key"],
            )
            failing = (datetime.now(UTC) - failing_since).total_seconds()
            if failing >= self.settings.alert_channel_disable_after_seconds:
                await self._disable(conn, row["project_id"], row["channel_key"], channel, error)

    async def _disable(self, conn: Conn, project: uuid.UUID, key: str, channel: dict[str, Any], error: str) -> None:
        done = await conn.fetchval(
            "UPDATE alert_channels SET disabled_at = now() WHERE project_id = $1 AND channel_key = $2 "
            "AND disabled_at IS NULL RETURNING 1",
            project,
            key,
        )
        if not done:
            return
        abandoned = await conn.fetchval(
            "WITH a AS (UPDATE alert_outbox SET abandoned_at = now() WHERE project_id = $1 AND channel_key = $2 "
            "AND delivered_at IS NULL AND abandoned_at IS NULL RETURNING 1) SELECT count(*) FROM a",
            project,
            key,
        )
        event = {
            "kind": "channel_disabled",
            "state": "disabled",
            "severity": "warning",
            "message": f"{channel['type']} channel {channel['url']} disabled after failing for "
            f"{self.settings.alert_channel_disable_after_seconds:.0f}s ({abandoned} notifications dropped): {error}",
            "channel": {"type": channel["type"], "url": channel["url"]},
        }
        await notify.record(conn, project, event, [], False, "", datetime.now(UTC))
        log.warning("channel_disabled", channel=channel["url"], abandoned=abandoned)
