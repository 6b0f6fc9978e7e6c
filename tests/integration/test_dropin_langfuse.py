"""Langfuse's own SDK (pinned in the dev extra), unchanged, with its base URL at Vane: prompts from
the registry, scores and OTLP traces into ingest, auth_check. The SDK takes one base URL: a
path-routing proxy in the test (tests/support/one_origin.py) stands in for the gateway, sending
`/api/public/v2/prompts` to the registry and every other path to ingest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.util._once import Once
from vane.v1.bus_pb2 import ScoreDataType

from tests.conftest import Infra
from tests.integration.test_ingest_otlp import read_stream
from tests.support.one_origin import one_origin
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def registry(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def ingest(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("ingest", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


@pytest.fixture
async def origin(registry: ServiceProcess, ingest: ServiceProcess) -> AsyncIterator[str]:
    async with one_origin([("/api/public/v2/prompts", registry.url)], default=ingest.url) as url:
        yield url


@pytest.fixture
def fresh_global_tracing() -> Iterator[None]:
    """Langfuse makes its own TracerProvider (with LANGFUSE_RELEASE on its resource) only while no
    global one is set: give it a process without one, as an app that uses only Langfuse is."""
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    yield
    provider = trace._TRACER_PROVIDER
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def langfuse_client(origin: str, project: Any, **kwargs: Any) -> Any:
    from langfuse import Langfuse

    return Langfuse(base_url=origin, public_key=project.keys.public_key, secret_key=project.keys.secret_key, **kwargs)


async def test_prompts_by_label_and_version_text_and_chat_with_config(
    origin: str, make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await make_project()
    lf = langfuse_client(origin, project, tracing_enabled=False)
    assert await asyncio.to_thread(lf.auth_check)

    def write_and_read() -> dict[str, Any]:
        lf.create_prompt(
            name="support-reply",
            prompt="Hello {{name}}, how can I help?",
            labels=["production"],
            config={"model": "gpt-4o", "temperature": 0.2},
            commit_message="first",
        )
        v2 = lf.create_prompt(
            name="support-reply", prompt="Hi {{name}}!", labels=["staging"], config={"model": "gpt-4o-mini"}
        )
        chat = lf.create_prompt(
            name="support-chat",
            type="chat",
            prompt=[
                {"role": "system", "content": "You are {{persona}}."},
                {"type": "placeholder", "name": "history"},
                {"role": "user", "content": "{{question}}"},
            ],
            labels=["production"],
            config={"model": "gpt-4o"},
        )
        return {
            "created": (v2.version, v2.labels, chat.version),
            "production": lf.get_prompt("support-reply"),
            "staging": lf.get_prompt("support-reply", label="staging", cache_ttl_seconds=0),
            "v1": lf.get_prompt("support-reply", version=1, cache_ttl_seconds=0),
            "chat": lf.get_prompt("support-chat", type="chat"),
        }

    got = await asyncio.to_thread(write_and_read)
    assert got["created"] == (2, ["latest", "staging"], 1)
    production, staging, v1, chat = got["production"], got["staging"], got["v1"], got["chat"]
    assert (production.version, production.config, production.is_fallback) == (
        1,
        {"model": "gpt-4o", "temperature": 0.2},
        False,
    )
    assert production.labels == ["production"] and production.commit_message == "first"
    assert production.compile(name="Ada") == "Hello Ada, how can I help?"
    assert (staging.version, staging.config, staging.compile(name="Ada")) == (2, {"model": "gpt-4o-mini"}, "Hi Ada!")
    assert (v1.version, v1.prompt) == (1, "Hello {{name}}, how can I help?")
    assert chat.compile(persona="a librarian", question="Where?", history=[{"role": "user", "content": "Hi"}]) == [
        {"role": "system", "content": "You are a librarian."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Where?"},
    ]
    assert chat.config == {"model": "gpt-4o"}


async def test_a_missing_prompt_serves_the_fallback_and_a_cached_prompt_is_served_until_it_expires(
    origin: str, make_project: Any
) -> None:
    project = await make_project()
    lf = langfuse_client(origin, project, host=origin, tracing_enabled=False)  # the older spelling of base_url

    def run() -> tuple[Any, ...]:
        lf.create_prompt(name="cached", prompt="one", labels=["production"])
        lf.create_prompt(name="cached", prompt="two")
        first = lf.get_prompt("cached")  # cached for the SDK's default minute
        httpx.patch(  # the label moves behind the SDK's back (Vane's own API)
            f"{origin}/api/public/v2/prompts/cached/versions/2",
            json={"newLabels": ["production"]},
            auth=(project.keys.public_key, project.keys.secret_key),
        ).raise_for_status()
        cached = lf.get_prompt("cached")
        fresh = lf.get_prompt("cached", cache_ttl_seconds=0)
        missing = lf.get_prompt("nowhere", fallback="Hello {{name}}")
        return first, cached, fresh, missing

    first, cached, fresh, missing = await asyncio.to_thread(run)
    assert (first.version, cached.version, fresh.version) == (1, 1, 2)
    assert (missing.is_fallback, missing.compile(name="Ada")) == (True, "Hello Ada")


async def test_scores_of_the_sdk_and_the_rest_api_land_as_vane_scores(
    origin: str, make_project: Any, infra: Infra
) -> None:
    project = await make_project()
    lf = langfuse_client(origin, project, tracing_enabled=True, flush_at=1)
    trace_id = "a" * 32

    def run() -> None:
        lf.create_score(name="helpfulness", value=4.0, trace_id=trace_id, observation_id="b" * 16, data_type="NUMERIC")
        lf.create_score(name="tone", value="friendly", trace_id=trace_id, data_type="CATEGORICAL", comment="ok")
        lf.flush()

    await asyncio.to_thread(run)
    async with httpx.AsyncClient(base_url=origin, auth=(project.keys.public_key, project.keys.secret_key)) as http:
        rest = await http.post(
            "/api/public/scores", json={"traceId": trace_id, "name": "thumbs", "value": 1, "dataType": "BOOLEAN"}
        )
        refused = await http.post("/api/public/scores", json={"sessionId": "s1", "name": "thumbs", "value": 1})
    assert rest.status_code == 200 and rest.json()["id"]
    assert refused.status_code == 400 and "traceId" in refused.json()["error"]["message"]
    scores = {s.name: s for s in await read_stream(infra, "scores", str(project.id), 3)}
    assert (scores["helpfulness"].value, scores["helpfulness"].span_id.hex()) == (4.0, "b" * 16)
    assert scores["helpfulness"].trace_id.hex() == trace_id
    assert (scores["tone"].string_value, scores["tone"].comment) == ("friendly", "ok")
    assert scores["tone"].data_type == ScoreDataType.SCORE_DATA_TYPE_CATEGORICAL
    assert (scores["thumbs"].value, scores["thumbs"].data_type) == (1.0, ScoreDataType.SCORE_DATA_TYPE_BOOLEAN)


async def test_generations_link_their_prompt_version_and_app_version_over_otlp(
    origin: str,
    make_project: Any,
    infra: Infra,
    fresh_global_tracing: None,
    monkeypatch: pytest.MonkeyPatch,
    start_service: Callable[..., ServiceProcess],
) -> None:
    aggregator = start_service("aggregator", wait=False)
    project = await make_project()
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "SOURCE_VERSION"):  # the SDK's own release guesses
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGFUSE_RELEASE", "checkout-2.4.0")
    lf = langfuse_client(origin, project)

    def run() -> None:
        lf.create_prompt(name="support-reply", prompt="Hello {{name}}", labels=["production"])
        prompt = lf.get_prompt("support-reply")
        with lf.start_as_current_span(name="handle-request") as root:
            root.update_trace(version="ignored-when-a-release-is-set", user_id="u1")
            with lf.start_as_current_observation(
                as_type="generation",
                name="reply",
                model="gpt-4o",
                prompt=prompt,
                input=[{"role": "user", "content": "Hi"}],
            ) as generation:
                generation.update(output="Hello Ada", usage_details={"input": 812, "output": 96})
        lf.flush()

    await asyncio.to_thread(run)
    spans = {s.name: s for s in await read_stream(infra, "spans", str(project.id), 2)}
    reply = spans["reply"]
    assert (reply.prompt_name, reply.prompt_version) == ("support-reply", 1)
    assert (reply.kind, reply.model, reply.input_tokens, reply.output_tokens) == ("llm", "gpt-4o", 812, 96)
    assert reply.cost > 0 and reply.output == "Hello Ada"
    assert reply.app_version == spans["handle-request"].app_version == "checkout-2.4.0"

    # The generation counts toward that Vane prompt version, and toward the app version.
    await asyncio.to_thread(aggregator.wait_ready)
    window = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:
        for _ in range(100):
            prompt_rows = (await http.get("/api/v1/prompts/support-reply/metrics", params=window)).json()["versions"]
            if prompt_rows:
                break
            await asyncio.sleep(0.2)
        app_rows = (await http.get("/api/v1/versions/metrics", params=window)).json()["versions"]
    assert [(r["version"], r["generation_count"], r["total_input_tokens"]) for r in prompt_rows] == [(1, 1, 812)]
    assert [(r["version"], r["generation_count"]) for r in app_rows] == [("checkout-2.4.0", 1)]


async def test_without_a_release_the_trace_version_reaches_its_generations(
    origin: str, make_project: Any, infra: Infra, fresh_global_tracing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await make_project()
    for name in ("LANGFUSE_RELEASE", "GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "SOURCE_VERSION"):
        monkeypatch.delenv(name, raising=False)
    lf = langfuse_client(origin, project)

    def run() -> None:
        with lf.start_as_current_span(name="handle-request") as root:
            root.update_trace(version="concise-prompt-v2")
            with lf.start_as_current_observation(as_type="generation", name="reply", model="gpt-4o") as generation:
                generation.update(usage_details={"input": 10, "output": 5})
        lf.flush()

    await asyncio.to_thread(run)
    spans = {s.name: s for s in await read_stream(infra, "spans", str(project.id), 2)}
    assert spans["reply"].app_version == spans["handle-request"].app_version == "concise-prompt-v2"


async def test_the_langfuse_routes_are_in_each_services_openapi_document(
    registry: ServiceProcess, ingest: ServiceProcess
) -> None:
    async with httpx.AsyncClient() as http:
        registry_paths = (await http.get(f"{registry.url}/schema/openapi.json")).json()["paths"]
        ingest_paths = (await http.get(f"{ingest.url}/schema/openapi.json")).json()["paths"]
    assert {"/api/public/v2/prompts", "/api/public/v2/prompts/{name}"} <= set(registry_paths)
    assert {"/api/public/scores", "/api/public/ingestion", "/api/public/projects"} <= set(ingest_paths)
