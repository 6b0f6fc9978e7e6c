"""The alert service as a user meets it: rules over generated rollups fire and resolve, each
transition notified once to a signed webhook and to Slack; a daily cycle does not look like an
anomaly, a spike does; a bad rule is refused naming its field; projects never see each other's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from services.cli.main import cli
from tests.conftest import Infra
from tests.support.aggregator_load import eventually
from tests.support.alert_receivers import FAST, SECRET, Receiver, generations, roll_up
from tests.support.processes import ServiceProcess

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MINUTE


@pytest.fixture(scope="module")
def alert(infra: Infra) -> Iterator[ServiceProcess]:
    """One alert service for the module's tests: each test has a project of its own."""
    proc = ServiceProcess("alert", infra.env(**FAST), infra.log_dir).start()
    yield proc
    proc.kill()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


def _minutes_ago(rng: np.random.Generator, n: int, low: float, high: float, now_ns: int | None = None) -> list[int]:
    now_ns = now_ns or time.time_ns()
    return [int(now_ns - m * NS_PER_MINUTE) for m in rng.uniform(low, high, n)]


def _channels(receiver: Receiver) -> list[dict[str, Any]]:
    return [
        {"type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET},
        {"type": "slack", "url": f"{receiver.url}/slack"},
    ]


async def _events(client: httpx.AsyncClient, rule_id: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/alerts/events", params={"rule": rule_id})
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["events"]))  # oldest first


async def _states_reach(client: httpx.AsyncClient, rule_id: str, states: list[str]) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await _events(client, rule_id)
        return found if [e["state"] for e in found] == states else None

    return await eventually(check, timeout=30)


async def test_a_threshold_rule_fires_and_resolves_with_one_signed_notification_each(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, receiver: Receiver
) -> None:
    project = await make_project()
    rng = np.random.default_rng(3)
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        r = await client.post(
            "/api/v1/alerts/rules",
            json={
                "name": "slow replies",
                "scope": {"prompt": "support-reply"},
                "metric": "latency_ms",
                "statistic": "p95",
                "condition": {"op": "above", "threshold": 1000},
                "window": "10m",
                "min_samples": 50,
                "severity": "critical",
                "channels": _channels(receiver),
            },
        )
        assert r.status_code == 201, r.text
        rule = r.json()
        assert rule["state"] == "ok" and rule["channels"][0]["secret"] == "********"
        await roll_up(pool, generations(project.id, _minutes_ago(rng, 200, 1, 5), rng.uniform(200, 400, 200)))
        await roll_up(pool, generations(project.id, _minutes_ago(rng, 100, 1, 5), rng.uniform(1500, 3000, 100)))
        events = await _states_reach(client, rule["id"], ["firing"])
        assert events[0]["severity"] == "critical" and events[0]["value"] > 1000

        # thousands of fast replies bring the p95 back under the threshold
        await roll_up(pool, generations(project.id, _minutes_ago(rng, 3000, 1, 5), rng.uniform(100, 300, 3000)))
        await _states_reach(client, rule["id"], ["firing", "resolved"])
        assert (await client.get(f"/api/v1/alerts/rules/{rule['id']}")).json()["state"] == "resolved"

    async def both_sent() -> bool:
        return len(receiver.at("/hook")) >= 2 and len(receiver.at("/slack")) >= 2

    await eventually(both_sent, timeout=20)
    hooks = receiver.at("/hook")
    assert all(h.verified for h in hooks)
    assert [h.json()["type"] for h in hooks] == ["rule.firing", "rule.resolved"]
    assert len(set(receiver.webhook_ids())) == 2
    firing = hooks[0].json()["data"]
    assert firing["rule"]["name"] == "slow replies" and firing["rule"]["scope"] == {"prompt": "support-reply"}
    slack = [s.json() for s in receiver.at("/slack")]
    assert "FIRING" in slack[0]["text"] and "slow replies" in slack[0]["text"] and "RESOLVED" in slack[1]["text"]


async def test_a_change_rule_fires_on_a_significant_rise_against_its_baseline(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, receiver: Receiver
) -> None:
    project = await make_project()
    rng = np.random.default_rng(4)
    now = time.time_ns()
    # the hour before the window: medians near 500 ms; the window: near 800 ms
    await roll_up(pool, generations(project.id, _minutes_ago(rng, 1000, 12, 60, now), rng.lognormal(6.2, 0.2, 1000)))
    await roll_up(pool, generations(project.id, _minutes_ago(rng, 300, 1, 8, now), rng.lognormal(6.7, 0.2, 300)))
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        r = await client.post(
            "/api/v1/alerts/rules",
            json={
                "name": "latency up",
                "metric": "latency_ms",
                "condition": {"op": "change", "pct": 25, "baseline_window": "1h"},
                "window": "10m",
                "min_samples": 30,
                "channels": _channels(receiver),
            },
        )
        assert r.status_code == 201, r.text
        events = await _states_reach(client, r.json()["id"], ["firing"])
        details = events[0]["body"]["details"]
        assert details["change_pct"] > 25 and details["test"] == "mann_whitney_u" and details["p_value"] < 0.05


async def test_anomaly_ignores_a_daily_cycle_and_fires_on_a_spike(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, receiver: Receiver
) -> None:
    project = await make_project()
    rng = np.random.default_rng(5)
    now = time.time_ns()
    gens = []
    for day in range(8):
        # this hour is the busy hour of every day (~300 generations); the hours before it are quiet (~30)
        busy = int(rng.normal(300, 15))
        gens += generations(
            project.id, _minutes_ago(rng, busy, 2, 55, now - day * NS_PER_DAY), rng.uniform(200, 400, busy)
        )
        if day == 0:
            for hour in range(1, 6):
                gens += generations(
                    project.id, _minutes_ago(rng, 30, 60 * hour, 60 * hour + 55, now), rng.uniform(200, 400, 30)
                )
    await roll_up(pool, gens)
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        volume = {
            "name": "traffic anomaly",
            "metric": "latency_ms",
            "statistic": "count",
            "condition": {"op": "anomaly", "sensitivity": 3.5},
            "window": "1h",
            "channels": _channels(receiver),
        }
        rule = (await client.post("/api/v1/alerts/rules", json=volume)).json()
        # against the hour before, this hour's 10x would be a huge change; against the same hour of
        # past days it is ordinary: evaluated several times, the rule stays ok
        for _ in range(4):
            first = (await client.get(f"/api/v1/alerts/rules/{rule['id']}")).json()["evaluated_at"]

            async def evaluated_again(before: str | None = first) -> bool:
                now_at = (await client.get(f"/api/v1/alerts/rules/{rule['id']}")).json()["evaluated_at"]
                return now_at is not None and now_at != before

            await eventually(evaluated_again, timeout=15)
        assert await _events(client, rule["id"]) == []
        assert (await client.get(f"/api/v1/alerts/rules/{rule['id']}")).json()["last_value"] > 250

        await roll_up(pool, generations(project.id, _minutes_ago(rng, 1500, 1, 3), rng.uniform(200, 400, 1500)))
        events = await _states_reach(client, rule["id"], ["firing"])
        assert events[0]["body"]["details"]["z"] > 3.5


async def test_bad_rules_are_refused_naming_the_field(make_project: Callable[..., Any], alert: ServiceProcess) -> None:
    project = await make_project()
    async with httpx.AsyncClient(base_url=alert.url, headers=project.bearer) as client:
        base = {"name": "r", "metric": "latency_ms", "condition": {"op": "above", "threshold": 1}}
        for change, field in [
            ({"metric": "speed"}, "metric"),
            ({"condition": {"op": "above"}}, "condition.threshold"),
            ({"window": "five"}, "window"),
            ({"channels": [{"type": "webhook", "url": "http://127.0.0.1:1/x"}]}, "channels[0].secret"),
            ({"scope": {"prompt": "p", "team": "x"}}, "scope.team"),
        ]:
            r = await client.post("/api/v1/alerts/rules", json={**base, **change})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["details"]["field"] == field and error["message"].startswith(f"{field}: ")
        r = await client.post("/api/v1/alerts/rules", content=b"{not json")
        assert r.status_code == 400
        assert (await client.post("/api/v1/alerts/rules", json=base)).status_code == 201
        r = await client.post("/api/v1/alerts/silences", json={"matchers": [], "until": "2999-01-01T00:00:00Z"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "matchers"
    async with httpx.AsyncClient(base_url=alert.url) as anonymous:
        assert (await anonymous.get("/api/v1/alerts/rules")).status_code == 401
        schemas = (await anonymous.get("/schema/openapi.json")).json()["components"]["schemas"]
        assert {"RuleBody", "SilenceBody", "RuleView", "RuleList", "EventList", "Silence"} <= set(schemas)


async def test_one_project_never_sees_another_projects_rules_events_or_silences(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, receiver: Receiver
) -> None:
    owner, other = await make_project(), await make_project()
    rng = np.random.default_rng(6)
    await roll_up(pool, generations(owner.id, _minutes_ago(rng, 100, 1, 4), rng.uniform(100, 200, 100), errors=30))
    async with (
        httpx.AsyncClient(base_url=alert.url, headers=owner.bearer) as mine,
        httpx.AsyncClient(base_url=alert.url, headers=other.bearer) as theirs,
    ):
        rule = {
            "name": "errors",
            "metric": "error_rate",
            "condition": {"op": "above", "threshold": 0.1},
            "channels": _channels(receiver),
        }
        created = (await mine.post("/api/v1/alerts/rules", json=rule)).json()
        # the other project's copy of the same rule watches its own (empty) traffic: it never fires
        (await theirs.post("/api/v1/alerts/rules", json=rule)).raise_for_status()
        await _states_reach(mine, created["id"], ["firing"])
        path = f"/api/v1/alerts/rules/{created['id']}"
        assert (await theirs.get(path)).status_code == 404
        assert (await theirs.patch(path, json={"window": "10m"})).status_code == 404
        assert (await theirs.delete(path)).status_code == 404
        assert [r["id"] for r in (await theirs.get("/api/v1/alerts/rules")).json()["rules"]] != [created["id"]]
        assert (await theirs.get("/api/v1/alerts/events")).json()["events"] == []
        assert (await theirs.get("/api/v1/alerts/events", params={"rule": created["id"]})).json()["events"] == []
        silence = await mine.post(
            "/api/v1/alerts/silences",
            json={"matchers": [{"name": "alertname", "value": "x"}], "until": "2999-01-01T00:00:00Z"},
        )
        assert silence.status_code == 201
        assert (await theirs.get("/api/v1/alerts/silences")).json()["silences"] == []
        assert (await theirs.delete(f"/api/v1/alerts/silences/{silence.json()['id']}")).status_code == 404
        assert (await mine.get(path)).json()["state"] == "firing"


async def test_the_cli_creates_lists_silences_and_shows_events(
    make_project: Callable[..., Any], alert: ServiceProcess, pool: Any, tmp_path: Path
) -> None:
    project = await make_project()
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(
        "name: cli errors\nmetric: error_rate\ncondition: {op: above, threshold: 0.1}\nseverity: critical\n"
    )
    env = {"VANE_ALERT_URL": alert.url, "VANE_SECRET_KEY": project.keys.secret_key}

    def vane(*args: str) -> str:
        result = CliRunner().invoke(cli, ["alerts", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert (await asyncio.to_thread(vane, "rules", "--create", str(rule_file))).startswith("created ")
    rng = np.random.default_rng(7)
    await roll_up(pool, generations(project.id, _minutes_ago(rng, 50, 1, 3), rng.uniform(100, 200, 50), errors=20))

    async def fired() -> bool:
        return "firing" in await asyncio.to_thread(vane, "events")

    await eventually(fired, timeout=20)
    listed = await asyncio.to_thread(vane, "rules")
    assert "firing" in listed and "cli errors" in listed and "rate error_rate = 0.4" in listed
    silenced = await asyncio.to_thread(vane, "silence", "--matcher", "alertname=cli errors", "--for", "2h")
    assert silenced.startswith("silenced until ")
    bad = await asyncio.to_thread(CliRunner().invoke, cli, ["alerts", "silence", "--matcher", "oops"], env=env)
    assert bad.exit_code != 0 and "label=value" in bad.output
