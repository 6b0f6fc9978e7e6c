"""Instrumentors as their users run them: the real `openai` client, instrumented by each package
(pinned in the dev extra), calling a local server that speaks OpenAI's chat-completions protocol,
exporting to Vane with only the URL and key changed. Every generation, streamed or not, must arrive
with its model, exact tokens, cost, latency, app version, the time to first token where the package
sends one, and the prompt version where the client links one."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Infra
from tests.integration.test_dropin_langfuse import ingest, registry  # noqa: F401  (module fixtures)
from tests.integration.test_ingest_otlp import read_stream
from tests.support.chat_completions import ChatCompletionsServer
from tests.support.one_origin import one_origin
from tests.support.processes import ServiceProcess

CALLS = 3  # of each kind, streamed and not
USAGE = (1260, 210)
COST = (1260 * 2.5 + 210 * 10.0) / 1e6  # gpt-4o in the built-in price table
LATENCY = 0.05  # the server waits this long before answering
ROOT = Path(__file__).resolve().parents[2]
# Which packages put the first streamed token on the span (OpenLLMetry records it as a metric only,
# OpenTelemetry's official instrumentation not at all).
SENDS_TTFT = {
    "openinference": True,
    "traceai": True,
    "langfuse": True,
    "openllmetry": False,
    "openai-v2": False,
    "openai-v2-events": False,  # its message content comes as OTLP log events, joined to the spans
}


@pytest.fixture(scope="module")
def chat_server() -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer(latency=LATENCY)
    server.usage = USAGE
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def origin(registry: ServiceProcess, ingest: ServiceProcess) -> AsyncIterator[str]:  # noqa: F811
    async with one_origin([("/api/public/v2/prompts", registry.url)], default=ingest.url) as url:
        yield url


async def run_app(package: str, run: dict[str, Any]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.instrumented_app",
        json.dumps({"package": package, **run}),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()[-4000:]


@pytest.mark.parametrize("package", sorted(SENDS_TTFT))
async def test_every_generation_arrives_with_model_tokens_cost_latency_and_app_version(
    package: str,
    chat_server: ChatCompletionsServer,
    ingest: ServiceProcess,  # noqa: F811
    origin: str,
    make_project: Any,
    infra: Infra,
) -> None:
    project = await make_project()
    app_version = f"{package}-v7"
    if package == "langfuse":
        async with httpx.AsyncClient(base_url=origin, auth=(project.keys.public_key, project.keys.secret_key)) as http:
            created = await http.post(
                "/api/public/v2/prompts", json={"name": "order-help", "prompt": "Help.", "labels": ["production"]}
            )
            assert created.status_code == 200
    run = {
        "ingest": ingest.url,
        "origin": origin,
        "public_key": project.keys.public_key,
        "secret_key": project.keys.secret_key,
        "openai": chat_server.base_url("chat"),
        "calls": CALLS,
        "app_version": app_version,
        "prompt": "order-help",
    }
    await run_app(package, run)
    spans = await read_stream(infra, "spans", str(project.id), 2 * CALLS)
    generations = [s for s in spans if s.kind == "llm"]
    assert len(generations) == 2 * CALLS, [(s.name, s.kind, s.model) for s in spans]
    for span in generations:
        assert span.model.startswith("gpt-4o"), span.model
        assert (span.input_tokens, span.output_tokens) == USAGE
        assert span.cost == pytest.approx(COST, abs=1e-12)
        assert span.end_time_unix_nano - span.start_time_unix_nano >= LATENCY * 1e9
        assert span.app_version == app_version
        if package == "langfuse":
            assert (span.prompt_name, span.prompt_version) == ("order-help", 1)
        if package in ("openai-v2-events", "openinference", "traceai", "langfuse"):
            assert "Where is my order?" in span.input and "How can I help you today?" in span.output
    with_ttft = [s for s in generations if s.HasField("ttft_ms")]
    if SENDS_TTFT[package]:
        assert len(with_ttft) >= CALLS  # every streamed one
        for span in with_ttft:
            assert 0 <= span.ttft_ms <= (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    else:
        assert with_ttft == []
