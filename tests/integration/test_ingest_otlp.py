"""Ingest end to end: real OpenTelemetry exporters (HTTP and gRPC), Langfuse's and traceAI's paths
and header forms, every bad body refused while valid traffic keeps flowing, retries stored once,
scores and model prices — read back from the real JetStream stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import nats
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from vane.v1.bus_pb2 import CanonicalSpan, Score, ScoreBatch, SpanBatch

from services.common.bus import Topology
from services.common.payload import CorruptPayload, payload_of
from tests.conftest import Infra
from tests.support.processes import ServiceProcess
from tests.support.traceai import traceai_register

GENERATION = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 100,
}


@pytest.fixture(scope="module")
def ingest(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("ingest", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


def finished_spans(
    count: int = 1, attributes: dict[str, Any] | None = None, resource: dict[str, Any] | None = None
) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"project_version_name": "v1"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span(f"generation-{i}", attributes=attributes or GENERATION):
            pass
    return list(memory.get_finished_spans())


async def read_stream(infra: Infra, kind: str, project_id: str, expect: int, deadline: float = 20.0) -> list[Any]:
    """Every record of this project on the spans or scores stream, waiting until `expect` arrived."""
    topology = Topology(infra.namespace)
    subject, stream = (
        (topology.spans_subject, topology.spans_stream)
        if kind == "spans"
        else (topology.scores_subject, topology.scores_stream)
    )
    nc = await nats.connect(infra.nats_url)
    found: list[Any] = []
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream=stream)
        end = time.monotonic() + deadline
        while True:
            try:
                msgs = await sub.fetch(256, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                if len(found) >= expect or time.monotonic() > end:
                    return found
                continue
            for msg in msgs:
                await msg.ack()
                # The namespace is the run's: other tests leave their own messages on it, some of
                # them garbage on purpose (the evaluator's dead-letter test). Only this project's count.
                with contextlib.suppress(DecodeError, CorruptPayload):
                    if kind == "spans":
                        batch = SpanBatch.FromString(payload_of(msg))
                        found.extend(batch.spans if batch.project_id == project_id else [])
                    else:
                        scores = ScoreBatch.FromString(payload_of(msg)).scores
                        found.extend(s for s in scores if s.project_id == project_id)
    finally:
        await nc.close()


async def export(exporter: Any, spans: list[ReadableSpan]) -> SpanExportResult:
    return await asyncio.to_thread(exporter.export, spans)


async def test_otel_http_exporter_spans_become_durable_priced_canonical_records(
    ingest: ServiceProcess, infra: Infra, make_project: Callable[..., Any]
) -> None:
    project = await make_project()
    exporter = HttpExporter(endpoint=f"{ingest.url}/v1/traces", headers=project.bearer)
    assert await export(exporter, finished_spans(3)) == SpanExportResult.SUCCESS
    spans: list[CanonicalSpan] = await read_stream(infra, "spans", str(project.id), 3)
    assert len(spans) == 3
    span = spans[0]
    assert (span.kind, span.model, span.app_version, span.input_tokens, span.output_tokens) == (
        "llm",
        "gpt-4o",
        "v1",
        1000,
        100,
    )
    assert abs(span.cost - (1000 * 2.5 + 100 * 10.0) / 1e6) < 1e-12  # priced from the built-in table


async def test_otel_grpc_exporter_lands_spans(ingest: ServiceProcess, infra: Infra, make_project: Any) -> None:
    project = await make_project()
    exporter = GrpcExporter(
        endpoint=f"127.0.0.1:{ingest.grpc_port}",
        insecure=True,
        headers=(("authorization", project.bearer["Authorization"]),),
    )
    assert await export(exporter, finished_spans(2)) == SpanExportResult.SUCCESS
    assert len(await read_stream(infra, "spans", str(project.id), 2)) == 2


async def test_grpc_without_a_key_is_unauthenticated(ingest: ServiceProcess) -> None:
    exporter = GrpcExporter(endpoint=f"127.0.0.1:{ingest.grpc_port}", insecure=True)
    assert await export(exporter, finished_spans(1)) == SpanExportResult.FAILURE


async def test_otlp_json_gzip_at_langfuses_path_with_basic_auth(
    ingest: ServiceProcess, infra: Infra, make_project: Any
) -> None:
    project = await make_project()
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "generation",
        "startTimeUnixNano": str(time.time_ns() - 10**9),
        "endTimeUnixNano": str(time.time_ns()),
        "attributes": [
            {"key": "langfuse.observation.type", "value": {"stringValue": "generation"}},
            {"key": "langfuse.observation.model.name", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "langfuse.observation.prompt.name", "value": {"stringValue": "support-reply"}},
            {"key": "langfuse.observation.prompt.version", "value": {"intValue": "2"}},
        ],
    }
    body = gzip.compress(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode())
    basic = base64.b64encode(f"{project.keys.public_key}:{project.keys.secret_key}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{ingest.url}/api/public/otel/v1/traces", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [landed] = await read_stream(infra, "spans", str(project.id), 1)
    assert landed.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert (landed.prompt_name, landed.prompt_version, landed.model) == ("support-reply", 2, "gpt-4o-mini")


async def test_bad_bodies_get_clear_errors_while_valid_traffic_keeps_flowing(
    ingest: ServiceProcess, infra: Infra, make_project: Any
) -> None:
    project = await make_project()
    url = f"{ingest.url}/v1/traces"
    proto = {**project.bearer, "Content-Type": "application/x-protobuf"}
    valid = encode_spans(finished_spans(1)).SerializeToString()
    bad_span = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abcd", "spanId": "eee19b7ec3c1b174"}]}]}]}
    ).encode()
    cases = [
        (valid[:-7], proto, 400, "not a valid OTLP protobuf"),
        (b"\x0a\x08\x12\x06\x12\x04\x2a\x02\xff\xfe", proto, 400, "not a valid OTLP protobuf"),
        (b"not gzip at all", {**proto, "Content-Encoding": "gzip"}, 400, "does not inflate"),
        (b"", proto, 400, "empty"),
        (valid, {**project.bearer, "Content-Type": "text/plain"}, 400, "Content-Type"),
        (bad_span, {**project.bearer, "Content-Type": "application/json"}, 400, "trace_id"),
        (gzip.compress(bytes(17 * 1024 * 1024)), {**proto, "Content-Encoding": "gzip"}, 413, "larger"),
        (bytes(17 * 1024 * 1024), proto, 413, ""),
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        for body, headers, status, reason in cases:
            response = await client.post(url, content=body, headers=headers)
            assert response.status_code == status, (reason, response.text)
            assert reason in response.json()["error"]["message"], response.text
        response = await client.post(url, content=valid, headers=proto)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-protobuf")
    assert len(await read_stream(infra, "spans", str(project.id), 1)) == 1


async def test_missing_or_wrong_keys_get_401(ingest: ServiceProcess) -> None:
    body = encode_spans(finished_spans(1)).SerializeToString()
    for headers in ({}, {"Authorization": "Bearer sk-vane-wrong"}, {"X-Api-Key": "pk-vane-x", "X-Secret-Key": "no"}):
        response = await asyncio.to_thread(
            httpx.post,
            f"{ingest.url}/v1/traces",
            content=body,
            headers={**headers, "Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 401 and "error" in response.json()


async def test_a_large_request_is_split_and_its_retry_is_stored_once(
    ingest: ServiceProcess, infra: Infra, make_project: Any
) -> None:
    project = await make_project()
    spans = finished_spans(700, {**GENERATION, "input.value": "x" * 3000})
    body = encode_spans(spans).SerializeToString()
    assert len(body) > 2 * 1024 * 1024  # more than one NATS message's worth
    headers = {**project.bearer, "Content-Type": "application/x-protobuf"}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(2):  # the client retries the same request: stored once
            assert (await client.post(f"{ingest.url}/v1/traces", content=body, headers=headers)).status_code == 200
    landed = await read_stream(infra, "spans", str(project.id), 700)
    assert len(landed) == 700 and len({s.span_id for s in landed}) == 700


async def test_scores_one_or_a_batch_land_on_the_scores_stream_and_configs_are_enforced(
    ingest: ServiceProcess, infra: Infra, make_project: Any
) -> None:
    project = await make_project()
    trace_id = "5b8efff798038103d269b633813fc60c"
    async with httpx.AsyncClient(base_url=ingest.url, headers=project.bearer) as client:
        config = {"name": "rating", "data_type": "numeric", "min_value": 1, "max_value": 5}
        assert (await client.post("/api/v1/score-configs", json=config)).status_code == 201
        assert [c["name"] for c in (await client.get("/api/v1/score-configs")).json()["score_configs"]] == ["rating"]
        one = await client.post("/api/v1/scores", json={"trace_id": trace_id, "name": "helpfulness", "value": 4.0})
        assert one.status_code == 202, one.text
        batch = [
            {"trace_id": trace_id, "span_id": "eee19b7ec3c1b174", "name": "rating", "value": 5, "source": "annotation"},
            {"trace_id": trace_id, "name": "tone", "value": "polite", "comment": "kind"},
        ]
        assert (await client.post("/api/v1/scores", json=batch)).json()["accepted"] == 2
        refused = await client.post("/api/v1/scores", json={"trace_id": trace_id, "name": "rating", "value": 9})
        assert refused.status_code == 400 and "above the maximum" in refused.text
    scores: list[Score] = await read_stream(infra, "scores", str(project.id), 3)
    assert sorted(s.name for s in scores) == ["helpfulness", "rating", "tone"]
    assert len({s.score_id for s in scores}) == 3


async def test_a_projects_model_price_overrides_the_builtin_one(
    ingest: ServiceProcess, infra: Infra, make_project: Any
) -> None:
    project = await make_project()
    price = {"model_name": "gpt-4o", "input_price_per_million": 1.0, "output_price_per_million": 1.0}
    async with httpx.AsyncClient(base_url=ingest.url, headers=project.bearer) as client:
        assert (await client.post("/api/v1/models", json=price)).status_code == 201
        models = (await client.get("/api/v1/models")).json()["models"]
        assert models[0]["source"] == "project" and any(m["source"] == "builtin" and m["read_on"] for m in models)
        assert (await client.post("/api/v1/models", json={**price, "match_pattern": "("})).status_code == 400
    exporter = HttpExporter(endpoint=f"{ingest.url}/v1/traces", headers=project.bearer)
    assert await export(exporter, finished_spans(1)) == SpanExportResult.SUCCESS
    [span] = await read_stream(infra, "spans", str(project.id), 1)
    assert abs(span.cost - 1100 / 1e6) < 1e-12


async def test_traceai_register_runs_unchanged_against_vane(
    ingest: ServiceProcess, infra: Infra, make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await make_project()
    provider = await traceai_register(monkeypatch, ingest.url, project.keys.public_key, project.keys.secret_key)
    attributes = {"gen_ai.span.kind": "LLM", "gen_ai.request.model": "gpt-4o-mini", "output.value": '{"a": 1}'}
    await asyncio.to_thread(lambda: provider.get_tracer("t").start_span("llm", attributes=attributes).end())
    [span] = await read_stream(infra, "spans", str(project.id), 1)
    assert (span.project_name, span.app_version, span.project_type) == (
        "my-chatbot",
        "gpt-4o-concise-prompt",
        "experiment",
    )
    assert json.loads(span.eval_tags_json)[0]["eval_name"] == "is_json"
    system = await asyncio.to_thread(
        httpx.post,
        f"{ingest.url}/tracer/custom-eval-config/get_custom_eval_by_name/",
        json={"eval_template_name": "toxicity"},
        headers={"X-Api-Key": project.keys.public_key, "X-Secret-Key": project.keys.secret_key},
    )
    # A traceAI system eval Vane runs takes traceAI's own mapping keys (toxicity: input).
    assert system.json()["result"]["evalTemplate"]["config"]["requiredKeys"][0] == "input"
