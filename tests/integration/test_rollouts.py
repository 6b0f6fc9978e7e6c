"""Guarded rollouts through the real registry and aggregator.

Traffic is served as in production: each generation's prompt comes from the SDK's
`get_prompt(name, label="production", sticky_key=…)`, so the label's split (pushed to the SDK by
WatchPrompts) decides its version. To keep the tests fast, the generations are then published as
canonical spans straight onto the bus (the path ingest takes), with a latency that depends on the
version served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import vane
from click.testing import CliRunner
from vane.v1 import bus_pb2

from services.cli.main import cli
from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually, publish_spans
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.slow

STEPS = [20, 50, 100]
MIN_SAMPLES = 200
GUARDRAILS = ["latency_ms", "error_rate"]
# Each version's latencies cycle through the same 40 quantiles of a log-normal (median 800 ms), so
# that two equal versions have all but identical samples and a slower one is exactly 30% slower.
_QUANTILES = [800 * 2.718281828 ** (0.3 * statistics.NormalDist().inv_cdf((k + 0.5) / 40)) for k in range(40)]


class Traffic:
    """Generations of one prompt, each served by the SDK with a sticky key of its own."""

    def __init__(
        self,
        client: vane.Vane,
        bus: Bus,
        project_id: uuid.UUID,
        prompt: str,
        slower: dict[int, float] | None = None,
        per_tick: int = 100,
    ) -> None:
        self.client, self.bus, self.project_id, self.prompt = client, bus, project_id, prompt
        self.slower = slower or {}
        self.per_tick = per_tick
        self.served: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            spans = []
            for _ in range(self.per_tick):
                p = await self.client.aget_prompt(self.prompt, label="production", sticky_key=secrets.token_hex(6))
                spans.append(self._span(p.version))
            with contextlib.suppress(Exception):  # a publish lost to a hiccup only means fewer runs
                await publish_spans(self.bus, self.project_id, spans)
            await asyncio.sleep(0.1)

    def _span(self, version: int) -> bus_pb2.CanonicalSpan:
        latency_ms = _QUANTILES[self.served[version] % len(_QUANTILES)] * self.slower.get(version, 1.0)
        self.served[version] += 1
        start = time.time_ns() - int(latency_ms * 1e6)
        return bus_pb2.CanonicalSpan(
            project_id=str(self.project_id),
            trace_id=secrets.token_bytes(16),
            span_id=secrets.token_bytes(8),
            name="reply",
            kind="llm",
            app_version="support-bot",
            prompt_name=self.prompt,
            prompt_version=version,
            model="gpt-4o",
            start_time_unix_nano=start,
            end_time_unix_nano=start + int(latency_ms * 1e6),
            input_tokens=400,
            output_tokens=80,
            cost=0.001,
            status=bus_pb2.SPAN_STATUS_OK,
        )


@pytest.fixture
def stack_env(namespace: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}


@pytest.fixture
def services(start_service: Callable[..., ServiceProcess], stack_env: dict[str, str]) -> Callable[..., Any]:
    """Start services side by side (each takes seconds to be ready on a busy machine)."""

    def start(*names: str) -> list[ServiceProcess]:
        started = [start_service(name, wait=False, **stack_env) for name in names]
        for proc in started:
            proc.wait_ready(60)
        return started

    return start


@pytest.fixture
async def sdk(make_project: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """An SDK client on a registry, closed after the test."""
    clients: list[vane.Vane] = []

    def make(project: Any, registry: ServiceProcess) -> vane.Vane:
        client = vane.Vane(
            secret_key=project.keys.secret_key, registry=f"127.0.0.1:{registry.grpc_port}", registry_url=registry.url
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


async def _prompt_with_two_versions(http: httpx.AsyncClient, name: str) -> None:
    for text, labels in (("Hello {{name}}", ["production"]), ("Hi {{name}}, how can I help?", [])):
        created = await http.post("/api/v1/prompts", json={"name": name, "prompt": text, "labels": labels})
        assert created.status_code == 201, created.text


async def _start(http: httpx.AsyncClient, name: str, **overrides: Any) -> dict[str, Any]:
    body = {"label": "production", "to_version": 2, "steps": STEPS, "min_samples_per_step": MIN_SAMPLES}
    created = await http.post(f"/api/v1/prompts/{name}/rollouts", json={**body, "guardrails": GUARDRAILS, **overrides})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _rollout(http: httpx.AsyncClient, name: str, rollout_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/v1/prompts/{name}/rollouts/{rollout_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _until_status(http: httpx.AsyncClient, name: str, rollout_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body = await _rollout(http, name, rollout_id)
        assert body["status"] in ("running", status), body
        return body if body["status"] == status else None

    return await eventually(reached, timeout=60)


async def _production(http: httpx.AsyncClient, name: str) -> list[dict[str, int]]:
    labels = (await http.get(f"/api/v1/prompts/{name}/labels")).json()["labels"]
    return list(labels["production"])


def _steps_taken(body: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(h["step"], h["weight"], h["event"]) for h in body["history"]]


async def test_a_rollout_to_a_slower_version_rolls_back_by_itself_and_one_to_an_equal_version_completes(
    make_project: Callable[..., Any],
    services: Callable[..., list[ServiceProcess]],
    sdk: Callable[..., vane.Vane],
    bus: Bus,
) -> None:
    project = await make_project()
    _, registry = services("aggregator", "registry")
    # The alert service's view: the rollback event as JetStream keeps it.
    events = await bus.js.subscribe(bus.topology.decisions_subject("rollback"), ordered_consumer=True)
    client = sdk(project, registry)
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as http:
        await _prompt_with_two_versions(http, "slow-reply")
        await _prompt_with_two_versions(http, "same-reply")
        slow_traffic = Traffic(client, bus, project.id, "slow-reply", slower={2: 1.3}).start()
        same_traffic = Traffic(client, bus, project.id, "same-reply").start()
        try:
            slow = await _start(http, "slow-reply")
            same = await _start(http, "same-reply")
            for started in (slow, same):
                assert (started["status"], started["from_version"], started["to_version"]) == ("running", 1, 2)
                assert (started["steps"], started["step"], started["weight"]) == (STEPS, 0, 20)
                assert _steps_taken(started) == [(0, 20, "started")]
            assert await _production(http, "slow-reply") == [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]

            slow = await _until_status(http, "slow-reply", slow["id"], "rolled_back")
            same = await _until_status(http, "same-reply", same["id"], "completed")
        finally:
            await slow_traffic.stop()
            await same_traffic.stop()

        assert _steps_taken(slow) == [(0, 20, "started"), (0, 0, "rolled_back")]
        reason = slow["history"][-1]["reason"]
        assert "latency_ms" in reason and "worse on version 2" in reason, reason
        assert slow["weight"] == 0 and slow["finished_at"] is not None
        assert await _production(http, "slow-reply") == [{"version": 1, "weight": 100}]
        assert slow_traffic.served[2] >= MIN_SAMPLES  # it saw enough runs before judging

        assert _steps_taken(same) == [(0, 20, "started"), (1, 50, "advanced"), (2, 100, "completed")]
        assert await _production(http, "same-reply") == [{"version": 2, "weight": 100}]
        moves = (await http.get("/api/v1/prompts/same-reply/label-history")).json()["history"]
        production = [m for m in moves if m["label"] == "production"]
        assert [[s["weight"] for s in m["to_split"] if s["version"] == 2] for m in production] == [
            [],
            [20],
            [50],
            [100],
        ]

        listed = (await http.get("/api/v1/prompts/slow-reply/rollouts")).json()["rollouts"]
        assert [r["id"] for r in listed] == [slow["id"]]

    msg = await events.next_msg(timeout=10)
    event = json.loads(msg.data)
    assert event["kind"] == "rollback" and event["id"] == f"{slow['id']}:0"
    assert event["project_id"] == str(project.id)
    assert (event["prompt"], event["label"], event["from_version"], event["to_version"]) == (
        "slow-reply",
        "production",
        1,
        2,
    )
    assert event["metric"] == "latency_ms" and event["comparison"]["verdict"] == "b_worse"
    assert event["comparison"]["b"]["estimate"] > event["comparison"]["a"]["estimate"]
    assert event["reason"] == reason and event["detected_at"].endswith("Z")

    # The SDK follows the rollback: every sticky key is served version 1 again.
    async def all_on_v1() -> bool:
        served = {client.get_prompt("slow-reply", label="production", sticky_key=f"u{i}").version for i in range(50)}
        return served == {1}

    await eventually(all_on_v1, timeout=10)


async def test_starting_reading_and_aborting_rollouts_through_the_api_sdk_and_cli(
    make_project: Callable[..., Any],
    services: Callable[..., list[ServiceProcess]],
    sdk: Callable[..., vane.Vane],
) -> None:
    project, other = await make_project(), await make_project()
    (registry,) = services("registry")  # no aggregator: nothing can advance a step
    client = sdk(project, registry)
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as http:
        await _prompt_with_two_versions(http, "reply")
        await http.post("/api/v1/prompts", json={"name": "reply", "prompt": "Yo {{name}}"})
        split = {"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}
        assert (await http.put("/api/v1/prompts/reply/labels/canary", json=split)).status_code == 200

        async def refused(body: dict[str, Any], name: str = "reply") -> tuple[int, str]:
            r = await http.post(f"/api/v1/prompts/{name}/rollouts", json=body)
            return r.status_code, r.json()["error"]["message"]

        good = {"label": "production", "to_version": 2, "steps": STEPS, "min_samples_per_step": 50}
        status, message = await refused({**good, "label": "canary"})
        assert status == 400 and "already split" in message
        status, message = await refused({**good, "label": "staging"})
        assert status == 400 and "no label 'staging'" in message
        assert (await refused({**good, "to_version": 1}))[0] == 400  # production is already there
        assert (await refused({**good, "steps": [50, 20, 100]}))[0] == 400
        assert (await refused({**good, "steps": [10, 50]}))[1].startswith("the last step must be 100")
        assert "unknown guardrail" in (await refused({**good, "guardrails": ["vibes"]}))[1]
        assert (await refused({**good, "to_version": 9}))[0] == 404
        assert (await refused(good, name="no-such-prompt"))[0] == 404
        assert (await http.get("/api/v1/prompts/reply/labels")).json()["labels"]["production"] == [
            {"version": 1, "weight": 100}
        ]

        started = client.start_rollout("reply", 3, steps=STEPS, min_samples_per_step=50, guardrails=["latency_ms"])
        assert (started.status, started.from_version, started.to_version, started.weight) == ("running", 1, 3, 20)
        with pytest.raises(vane.ApiError) as second:
            client.start_rollout("reply", 2)
        assert second.value.status == 409 and started.id in str(second.value)
        assert [r.id for r in client.rollouts("reply")] == [started.id]

        # Another project's key sees no such rollout, and cannot abort it.
        async with httpx.AsyncClient(base_url=registry.url, headers=other.bearer, timeout=10) as foreign:
            assert (await foreign.get(f"/api/v1/prompts/reply/rollouts/{started.id}")).status_code == 404
            assert (await foreign.post(f"/api/v1/prompts/reply/rollouts/{started.id}/abort")).status_code == 404
            assert (await foreign.get("/api/v1/prompts/reply/rollouts")).status_code == 404
        assert (await http.get("/api/v1/prompts/reply/rollouts/not-an-id")).status_code == 404
        async with httpx.AsyncClient(base_url=registry.url) as anonymous:
            assert (await anonymous.post("/api/v1/prompts/reply/rollouts", json=good)).status_code == 401
            schema = (await anonymous.get("/schema/openapi.json")).json()
        assert {"/api/v1/prompts/{name}/rollouts", "/api/v1/prompts/{name}/rollouts/{rollout_id}/abort"} <= set(
            schema["paths"]
        )
        assert {"history", "status", "from_version"} <= set(
            schema["components"]["schemas"]["RolloutBody"]["properties"]
        )

        env = {"VANE_REGISTRY_URL": registry.url, "VANE_SECRET_KEY": project.keys.secret_key}
        runner = CliRunner()
        shown = runner.invoke(cli, ["rollouts", "show", "reply", started.id, "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["status"] == "running"
        table = runner.invoke(cli, ["rollouts", "show", "reply"], env=env)
        assert table.exit_code == 0 and "running" in table.output and "started" in table.output, table.output

        await asyncio.sleep(2.0)  # worker rounds without an aggregator: no statistics, no step
        assert client.rollout("reply", started.id).step == 0

        aborted = runner.invoke(cli, ["rollouts", "abort", "reply", started.id, "--json"], env=env)
        assert aborted.exit_code == 0, aborted.output
        body = json.loads(aborted.output)
        assert body["status"] == "aborted" and _steps_taken(body) == [(0, 20, "started"), (0, 0, "aborted")]
        assert (await http.get("/api/v1/prompts/reply/labels")).json()["labels"]["production"] == [
            {"version": 1, "weight": 100}
        ]
        again = runner.invoke(cli, ["rollouts", "abort", "reply", started.id], env=env)
        assert again.exit_code != 0 and "409" in again.output

        restarted = runner.invoke(
            cli, ["rollouts", "start", "reply", "2", "--steps", "10,100", "--guardrail", "error_rate"], env=env
        )
        assert restarted.exit_code == 0 and "v1 → v2" in restarted.output, restarted.output
        latest = client.rollouts("reply")[0]
        assert latest.guardrails == ["error_rate"] and latest.steps == [10, 100]
        assert client.abort_rollout("reply", latest.id).status == "aborted"


async def _consistent(pool: asyncpg.Pool, rollout_id: str) -> tuple[str, int]:
    """The label's split is the one the rollout's current step says, and the history agrees."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM rollouts WHERE id = $1", uuid.UUID(rollout_id))
        split = await conn.fetch(
            "SELECT version, weight FROM prompt_labels WHERE project_id = $1 AND name = $2 AND label = $3",
            row["project_id"],
            row["prompt"],
            row["label"],
        )
        history = await conn.fetch(
            "SELECT step, event FROM rollout_history WHERE rollout_id = $1 ORDER BY id", row["id"]
        )
    weight = row["steps"][row["step"]] if row["status"] in ("running", "completed") else 0
    expected = {1: 100 - weight, 2: weight}
    assert {r["version"]: r["weight"] for r in split} == {v: w for v, w in expected.items() if w}
    assert [h["step"] for h in history] == list(range(row["step"] + 1)), history
    return row["status"], row["step"]


async def test_a_rollout_survives_sigkill_of_the_registry_and_of_the_aggregator_and_finishes(
    make_project: Callable[..., Any],
    services: Callable[..., list[ServiceProcess]],
    sdk: Callable[..., vane.Vane],
    bus: Bus,
    pool: asyncpg.Pool,
) -> None:
    project = await make_project()
    aggregator, registry = services("aggregator", "registry")
    client = sdk(project, registry)
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as http:
        await _prompt_with_two_versions(http, "reply")
        traffic = Traffic(client, bus, project.id, "reply", per_tick=40).start()
        try:
            rollout = await _start(http, "reply", min_samples_per_step=300)
            await asyncio.sleep(1.0)
            registry.kill()  # SIGKILL, mid-step: perhaps mid-visit
            assert await _consistent(pool, rollout["id"]) == ("running", 0)
            registry.start()

            async def at_step_one() -> bool:
                return (await _rollout(http, "reply", rollout["id"]))["step"] >= 1

            await eventually(at_step_one, timeout=60)
            aggregator.kill()
            await asyncio.sleep(1.0)  # a visit that had its answer just before the kill commits it
            status, step = await _consistent(pool, rollout["id"])
            await asyncio.sleep(2.0)  # the worker asks, nobody answers: the rollout waits where it is
            assert await _consistent(pool, rollout["id"]) == (status, step)
            aggregator.start()
            done = await _until_status(http, "reply", rollout["id"], "completed")
        finally:
            await traffic.stop()
    assert _steps_taken(done) == [(0, 20, "started"), (1, 50, "advanced"), (2, 100, "completed")]
    assert await _consistent(pool, rollout["id"]) == ("completed", 2)


async def test_two_registry_replicas_never_record_a_step_twice(
    make_project: Callable[..., Any],
    services: Callable[..., list[ServiceProcess]],
    sdk: Callable[..., vane.Vane],
    bus: Bus,
    pool: asyncpg.Pool,
) -> None:
    project = await make_project()
    _, *replicas = services("aggregator", "registry", "registry")
    client = sdk(project, replicas[0])
    async with httpx.AsyncClient(base_url=replicas[1].url, headers=project.bearer, timeout=10) as http:
        await _prompt_with_two_versions(http, "reply")
        traffic = Traffic(client, bus, project.id, "reply").start()
        try:
            rollout = await _start(http, "reply", steps=[10, 30, 50, 100])
            done = await _until_status(http, "reply", rollout["id"], "completed")
        finally:
            await traffic.stop()
        moves = (await http.get("/api/v1/prompts/reply/label-history")).json()["history"]
    assert [h["step"] for h in done["history"]] == [0, 1, 2, 3]
    assert [h["weight"] for h in done["history"]] == [10, 30, 50, 100]
    assert len([m for m in moves if m["label"] == "production"]) == 1 + 4  # its creation, then one per step
    assert await _consistent(pool, rollout["id"]) == ("completed", 3)
    # Whichever replica took a step, it was taken once: the replicas' logs hold three advances in all.
    advances = [r.tail(10_000).count('"rollout_advanced"') for r in replicas]
    assert sum(advances) == 3, advances
