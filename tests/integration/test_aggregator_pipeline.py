"""End to end through the real front doors: the demo workload goes OTLP/HTTP → ingest → JetStream →
aggregator, prompts through the registry, scores through ingest's scores API."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.cli.demo import PROMPT, demo_generations, load_demo
from services.common.settings import Settings
from tests.support.aggregator_load import STREAM_MAX_BYTES, bus_for, drop_streams, eventually

pytestmark = pytest.mark.slow


async def test_demo_workload_through_ingest_shows_both_prompt_and_app_versions_with_scores(
    infra: Any, make_project: Callable[..., Any], start_service: Callable[..., Any]
) -> None:
    namespace = f"{infra.namespace}p{secrets.token_hex(3)}"
    env = {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}
    project = await make_project()
    registry = start_service("registry", **env)
    ingest = start_service("ingest", **env)
    aggregator = start_service("aggregator", **env)
    endpoints = {"registry_http": registry.url, "ingest_http": ingest.url, "aggregator": aggregator.url}
    try:
        await load_demo(endpoints, project.keys.secret_key)
        generations = demo_generations()
        async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:
            body = (await http.get(f"/api/v1/prompts/{PROMPT}/metrics")).json()
            rows = {r["version"]: r for r in body["versions"]}
            assert set(rows) == {1, 2}
            assert rows[2]["labels"] == ["latest", "production"] and rows[1]["labels"] == ["staging"]
            for version, row in rows.items():
                assert row["generation_count"] == sum(1 for g in generations if g.prompt_version == version)
                assert row["total_input_tokens"] == sum(
                    g.input_tokens for g in generations if g.prompt_version == version
                )
                assert row["total_cost"] > 0  # priced at ingest from the model and tokens
            production = (await http.get(f"/api/v1/prompts/{PROMPT}/metrics", params={"label": "production"})).json()
            assert [r["version"] for r in production["versions"]] == [2]
            apps = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            assert sorted(r["version"] for r in apps) == ["gpt-4o-baseline", "gpt-4o-concise-prompt"]
            assert rows[2]["median_latency_ms"] < rows[1]["median_latency_ms"]

            async def scored() -> bool:
                r = (await http.get(f"/api/v1/prompts/{PROMPT}/metrics")).json()["versions"]
                return all(v["scores"].get("helpfulness", {}).get("count", 0) > 0 for v in r)

            await eventually(scored, timeout=60)

            # each run is a trace of five spans (two of them LLM calls): one run per reply
            async def runs_counted() -> list[dict[str, Any]] | None:
                rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
                return rows if sum(r["run_count"] or 0 for r in rows) == len(generations) else None

            apps = await eventually(runs_counted, timeout=60)
            assert sum(r["generation_count"] for r in apps) == 2 * len(generations)
            for row in apps:
                assert row["median_run_latency_ms"] > row["median_latency_ms"]  # a run holds its calls
            # a second `vane up --demo` on the same database loads nothing more
            await load_demo(endpoints, project.keys.secret_key)
            again = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            assert sum(r["generation_count"] for r in again) == 2 * len(generations)
    finally:
        bus = await bus_for(Settings.from_env(), infra.nats_url, namespace)
        await drop_streams(bus)
        await bus.close()
