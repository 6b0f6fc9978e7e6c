"""Experiments and regressions through the real registry, aggregator and bus: the split decides each
run's version through the SDK's sticky keys, as it does in production."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import vane
from click.testing import CliRunner

from services.cli.main import cli
from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually, make_load, publish_spans

pytestmark = pytest.mark.slow


def _env(namespace: str, **extra: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES), **extra}


async def _prompt(api: httpx.AsyncClient, name: str, versions: int) -> None:
    for i in range(versions):
        created = await api.post("/api/v1/prompts", json={"name": name, "prompt": f"{name} v{i + 1} {{{{q}}}}"})
        assert created.status_code == 201, created.text


def _served(client: vane.Vane, prompt: str, users: range) -> list[int]:
    """The version the split serves each user, as the app's SDK picks it."""
    return [client.get_prompt(prompt, sticky_key=f"user-{u}").version for u in users]


async def _traffic(bus: Bus, project: Any, prompt: str, versions: list[int], seed: int, slower: int = 0) -> None:
    """One generation per served version, starting now; `slower`'s latency is 30% higher."""
    load = make_load(project.id, len(versions), seed=seed, prompt=prompt, start_ns=time.time_ns(), spread_seconds=1)
    for span, version in zip(load.spans, versions, strict=True):
        span.prompt_version = version
        if version == slower:
            span.end_time_unix_nano = span.start_time_unix_nano + int(
                (span.end_time_unix_nano - span.start_time_unix_nano) * 1.3
            )
    await publish_spans(bus, project.id, load.spans)


async def test_an_experiment_on_a_split_label_counts_its_arms_checks_the_ratio_and_promotes(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    registry = start_service("registry", **_env(namespace))
    aggregator = start_service("aggregator", **_env(namespace, VANE_REGISTRY_URL=registry.url))
    client = vane.Vane(secret_key=project.keys.secret_key, registry=f"127.0.0.1:{registry.grpc_port}")
    api = httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10)
    query = httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=20)
    try:
        for name in ("ab", "srm"):
            await _prompt(api, name, 2)
            split = [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
            assert (
                await api.put(f"/api/v1/prompts/{name}/labels/production", json={"split": split})
            ).status_code == 200
        body = {
            "name": "tone",
            "prompt": "ab",
            "label": "production",
            "primary_metric": "latency_ms",
            "guardrails": ["error_rate", "cost"],
            "min_samples_per_arm": 200,
        }
        created = await query.post("/api/v1/experiments", json=body)
        assert created.status_code == 201, created.text
        experiment = created.json()
        assert [(a["version"], a["weight"]) for a in experiment["arms"]] == [(1, 50), (2, 50)]
        assert experiment["status"] == "running" and experiment["primary"]["verdict"] == "not_enough_data"
        srm = (await query.post("/api/v1/experiments", json={**body, "name": "ratio", "prompt": "srm"})).json()
        assert (await query.post("/api/v1/experiments", json=body)).status_code == 409
        unsplit = await query.post("/api/v1/experiments", json={**body, "name": "x", "label": "latest"})
        assert unsplit.status_code == 400 and "split" in unsplit.text
        wrong = await query.post("/api/v1/experiments", json={**body, "name": "y", "primary_metric": "speed"})
        assert wrong.status_code == 400 and "primary_metric" in wrong.text

        # the "srm" split drifts to 60/40 after its experiment declared 50/50
        drifted = [{"version": 1, "weight": 60}, {"version": 2, "weight": 40}]
        await api.put("/api/v1/prompts/srm/labels/production", json={"split": drifted})
        await eventually(lambda: asyncio.to_thread(lambda: set(_served(client, "srm", range(50))) == {1, 2}))
        await asyncio.sleep(1.5)  # the SDK's cache follows the moved split
        await _traffic(bus, project, "ab", _served(client, "ab", range(2000)), seed=1)
        await _traffic(bus, project, "srm", _served(client, "srm", range(2000)), seed=2)

        async def counted(eid: str) -> dict[str, Any] | None:
            found = (await query.get(f"/api/v1/experiments/{eid}")).json()
            return found if sum(a["n"] for a in found["arms"]) == 2000 else None

        ab = await eventually(lambda: counted(experiment["id"]), timeout=60)
        shares = [a["observed_share"] for a in ab["arms"]]
        assert all(abs(s - 0.5) < 0.05 for s in shares), shares
        assert ab["srm"]["mismatch"] is False
        primary = ab["primary"]
        assert primary["metric"] == "latency_ms" and primary["verdict"] == "inconclusive"
        assert abs(sum(primary["probability_best"].values()) - 1) < 1e-9
        for version in ("1", "2"):
            low, high = primary["sequential_ci95"][version]
            assert low < primary["estimates"][version] < high
        assert {(g["metric"], g["arm"]) for g in ab["guardrails"]} >= {("error_rate", 2), ("cost", 2)}
        drift = await eventually(lambda: counted(srm["id"]), timeout=60)
        assert drift["srm"]["mismatch"] is True and drift["srm"]["p_value"] < 0.001
        listed = (await query.get("/api/v1/experiments")).json()["experiments"]
        assert {e["name"] for e in listed} == {"tone", "ratio"}

        # the SDK and the CLI read the same experiment
        reader = vane.Vane(secret_key=project.keys.secret_key, query_url=aggregator.url)
        seen = reader.experiment(srm["id"])
        assert seen.srm_mismatch and [a.version for a in seen.arms] == [1, 2]
        assert {e.name for e in reader.experiments()} == {"tone", "ratio"}
        keys = ["--url", aggregator.url, "--secret-key", project.keys.secret_key]
        shown = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["experiments", "show", srm["id"], *keys])
        assert shown.exit_code == 0 and "MISMATCH" in shown.output, shown.output
        as_json = CliRunner().invoke(cli, ["experiments", "show", "--json", experiment["id"], *keys])
        assert json.loads(as_json.output)["name"] == "tone"

        # stop: promote moves the label onto that version alone
        stopped = await query.post(
            f"/api/v1/experiments/{experiment['id']}/stop", json={"decision": "promote", "version": 2}
        )
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "stopped" and stopped.json()["decision"]["version"] == 2
        labels = (await api.get("/api/v1/prompts/ab/labels")).json()["labels"]
        assert labels["production"] == [{"version": 2, "weight": 100}], labels
        again = await query.post(f"/api/v1/experiments/{experiment['id']}/stop", json={"decision": "keep"})
        assert again.status_code == 409
        other = await make_project()
        hidden = await query.get(f"/api/v1/experiments/{experiment['id']}", headers=other.bearer)
        assert hidden.status_code == 404
    finally:
        client.close()
        await api.aclose()
        await query.aclose()


async def _moved_at(api: httpx.AsyncClient, prompt: str, to_version: int) -> datetime:
    history = (await api.get(f"/api/v1/prompts/{prompt}/label-history")).json()["history"]
    move = [h for h in history if h.get("to_version") == to_version][-1]
    return datetime.fromisoformat(move["moved_at"].replace("Z", "+00:00"))


async def test_a_label_moved_to_a_slower_version_is_one_regression_and_an_equal_version_none(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str, pool: Any
) -> None:
    project = await make_project()
    env = _env(namespace, VANE_REGRESSION_MIN_SAMPLES="500")
    registry = start_service("registry", **env)
    aggregator = start_service("aggregator", **env)
    reader = await bus.js.pull_subscribe(
        bus.topology.decisions_subject("regression"), durable="test-reader", stream=bus.topology.decisions_stream
    )
    api = httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10)
    query = httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=20)

    def slowed(spans: list[Any]) -> list[Any]:
        for span in spans:
            took = span.end_time_unix_nano - span.start_time_unix_nano
            span.end_time_unix_nano = span.start_time_unix_nano + int(took * 1.3)
        return spans

    async def deploy(version: int, previous: int, seed: int, slower_before: bool, slower_after: bool) -> None:
        """Move production to `version`, then: 600 runs of `previous` in the minute before the move,
        and 600 of the new version after it (each 30% slower where asked)."""
        await api.patch(f"/api/v1/prompts/reg/versions/{version}", json={"labels": ["production"]})
        moved = await _moved_at(api, "reg", version)
        minute_ns = int(moved.timestamp()) // 60 * 60 * 1_000_000_000
        before = make_load(
            project.id,
            600,
            seed=seed,
            prompt="reg",
            prompt_versions=(previous,),
            start_ns=minute_ns - 60 * 10**9,
            spread_seconds=59,
        ).spans
        await publish_spans(bus, project.id, slowed(before) if slower_before else before)

        async def stored() -> bool:
            rows = (await query.get("/api/v1/prompts/reg/metrics")).json()["versions"]
            return any(r["version"] == previous and r["generation_count"] >= 600 for r in rows)

        await eventually(stored, timeout=60)
        after = make_load(
            project.id,
            600,
            seed=seed + 1,
            prompt="reg",
            prompt_versions=(version,),
            start_ns=time.time_ns(),
            spread_seconds=1,
        ).spans
        await publish_spans(bus, project.id, slowed(after) if slower_after else after)

    async def settled(to_version: int) -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM regression_checks c JOIN prompt_label_history h ON h.id = c.move_id "
                "WHERE h.project_id = $1 AND h.to_version = $2",
                project.id,
                to_version,
            )
        )

    try:
        await _prompt(api, "reg", 3)
        await api.patch("/api/v1/prompts/reg/versions/1", json={"labels": ["production"]})
        await deploy(2, 1, seed=10, slower_before=False, slower_after=True)

        async def found() -> list[dict[str, Any]] | None:
            listed = (await query.get("/api/v1/regressions", params={"prompt": "reg"})).json()["regressions"]
            return listed or None

        regressions = await eventually(found, timeout=60)
        assert {(r["from_version"], r["to_version"], r["label"]) for r in regressions} == {(1, 2, "production")}
        assert ("latency_ms", "median") in {(r["metric"], r["statistic"]) for r in regressions}
        latency = next(r for r in regressions if r["metric"] == "latency_ms")
        assert latency["comparison"]["verdict"] == "b_worse" and latency["comparison"]["relative_difference"] > 0.05
        event = json.loads((await reader.fetch(1, timeout=10))[0].data)
        assert event["kind"] == "regression" and event["project_id"] == str(project.id)
        assert (event["prompt"], event["from_version"], event["to_version"]) == ("reg", 1, 2)

        # a restart neither repeats nor loses: the same regressions, and the next move is still checked
        aggregator.kill()
        aggregator.start()
        await deploy(3, 2, seed=20, slower_before=True, slower_after=True)  # v3 no worse than v2
        await eventually(lambda: settled(3), timeout=60)
        after = (await query.get("/api/v1/regressions", params={"prompt": "reg"})).json()["regressions"]
        assert sorted(r["id"] for r in after) == sorted(r["id"] for r in regressions)
        assert (await query.get("/api/v1/regressions", params={"prompt": "other"})).json()["regressions"] == []
    finally:
        await api.aclose()
        await query.aclose()
