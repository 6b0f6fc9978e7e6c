"""The SDK's tracing against a running ingest: register, start_generation with a linked prompt,
observe on sync and async functions, scores, flush."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import vane
from vane.v1.bus_pb2 import SpanStatus

from tests.conftest import Infra
from tests.integration.test_ingest_otlp import ingest, read_stream  # noqa: F401  (the module's ingest fixture)


@dataclass
class ServedPrompt:
    """What the registry's Prompt exposes that tracing relies on (duck-typed)."""

    name: str
    version: int
    labels: list[str] = field(default_factory=list)
    is_fallback: bool = False
    label: str | None = None  # the label the fetch asked for


@pytest.fixture
def client(ingest: Any, make_project: Any) -> Iterator[Any]:  # noqa: F811
    providers: list[Any] = []

    async def make() -> tuple[Any, Any]:
        project = await make_project()
        provider = vane.register(
            project_type=vane.ProjectType.EXPERIMENT,
            project_name="my-chatbot",
            project_version_name="gpt-4o-concise-prompt",
            eval_tags=[vane.EvalTag(eval_name="is_json", mapping={"output": "output.value"})],
            metadata={"team": "support"},
            secret_key=project.keys.secret_key,
            endpoint=ingest.url,
            set_global_tracer_provider=False,
        )
        providers.append(provider)
        return project, vane.Vane(secret_key=project.keys.secret_key, otlp_endpoint=ingest.url, api_url=ingest.url)

    yield make
    for provider in providers:
        provider.shutdown()  # exports what is left while ingest still runs


async def test_a_generation_carries_prompt_version_usage_ttft_and_app_version(client: Any, infra: Infra) -> None:
    project, v = await client()
    prompt = ServedPrompt("support-reply", 3, ["latest", "production"], label="production")
    with v.start_generation(
        name="reply", model="gpt-4o", prompt=prompt, input=[{"role": "user", "content": "Hi"}]
    ) as g:
        g.first_token()
        g.update(output="Hello!", usage={"input_tokens": 812, "output_tokens": 96})
    with v.start_generation(name="fallback", model="gpt-4o", prompt=ServedPrompt("support-reply", 0, is_fallback=True)):
        pass
    assert await asyncio.to_thread(v.flush)
    spans = {s.name: s for s in await read_stream(infra, "spans", str(project.id), 2)}
    reply = spans["reply"]
    assert (reply.prompt_name, reply.prompt_version, reply.prompt_label) == ("support-reply", 3, "production")
    assert (reply.kind, reply.model, reply.input_tokens, reply.output_tokens) == ("llm", "gpt-4o", 812, 96)
    assert reply.HasField("ttft_ms") and reply.HasField("cost") and reply.output == "Hello!"
    assert (reply.project_name, reply.app_version, reply.project_type) == (
        "my-chatbot",
        "gpt-4o-concise-prompt",
        "experiment",
    )
    assert json.loads(reply.eval_tags_json)[0]["mapping"] == {"output": "output.value"}
    assert json.loads(reply.metadata_json) == {"team": "support"}
    assert (spans["fallback"].prompt_name, spans["fallback"].prompt_version) == ("", 0)  # a fallback links nothing


async def test_observe_traces_sync_and_async_functions_and_errors(client: Any, infra: Infra) -> None:
    project, v = await client()

    @vane.observe(as_type="generation", model="gpt-4o-mini")
    def answer(question: str) -> str:
        vane.update_current_generation(usage={"input_tokens": 10, "output_tokens": 2}, cost=0.25)
        return f"re: {question}"

    @vane.observe(as_type="generation", name="async-answer")
    async def answer_async(question: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"answer": question}

    @vane.observe()
    def broken() -> None:
        raise ValueError("no")

    assert answer("why?") == "re: why?"
    assert await answer_async("how?") == {"answer": "how?"}
    with pytest.raises(ValueError):
        broken()
    assert await asyncio.to_thread(v.flush)
    spans = {s.name: s for s in await read_stream(infra, "spans", str(project.id), 3)}
    assert (spans["answer"].model, spans["answer"].cost, spans["answer"].output) == ("gpt-4o-mini", 0.25, "re: why?")
    assert json.loads(spans["answer"].input) == {"question": "why?"}
    assert json.loads(spans["async-answer"].output) == {"answer": "how?"}
    assert spans["broken"].status == SpanStatus.SPAN_STATUS_ERROR and "no" in spans["broken"].error_message


async def test_score_posts_to_vane_and_a_refused_score_raises(client: Any, infra: Infra) -> None:
    project, v = await client()
    with v.start_generation(name="reply", model="gpt-4o") as g:
        pass
    score_id = await asyncio.to_thread(
        v.score, trace_id=g.trace_id, span_id=g.span_id, name="helpfulness", value=4.0, source="annotation"
    )
    [score] = await read_stream(infra, "scores", str(project.id), 1)
    assert (score.score_id, score.name, score.value, score.trace_id.hex()) == (score_id, "helpfulness", 4.0, g.trace_id)
    with pytest.raises(vane.ScoreError, match="400"):
        await asyncio.to_thread(v.score, trace_id="nope", name="x", value=1)
