"""`vane up --demo`: a realistic workload through the real front doors, so every view has data.

Two prompt versions in the registry (v1 on `staging`, v2 on `production`), two app versions, a few
thousand runs over the last three days sent as OTLP/HTTP to ingest (traceAI's and the GenAI
conventions), and scores for most of them through the scores API. Each run is a trace as an agent
makes one: a root span, a retrieval, a planning LLM call, a tool call and the reply (the generation
linked to the prompt version), so that the run metrics have data too. Loaded once per database: a
second `vane up --demo` finds the prompt and leaves everything as it is.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import httpx
import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

PROMPT = "support-reply"
APP_VERSIONS = ("gpt-4o-baseline", "gpt-4o-concise-prompt")
RUNS = 3000
DAYS = 3
PER_REQUEST = 250


@dataclass(frozen=True)
class Generation:
    """One generation to export, with the ids a score names it by."""

    trace_id: bytes
    span_id: bytes
    app_version: str
    prompt_version: int
    model: str
    start_ns: int
    latency_ms: float
    ttft_ms: float
    input_tokens: int
    output_tokens: int
    error: bool = False


def _attr(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def otlp_request(generations: list[Generation], project_name: str = "demo-chatbot") -> bytes:
    """An OTLP/HTTP protobuf body: one ResourceSpans per app version, as the SDK's register() sends."""
    request = ExportTraceServiceRequest()
    by_app: dict[str, list[Generation]] = {}
    for g in generations:
        by_app.setdefault(g.app_version, []).append(g)
    for app_version, gens in by_app.items():
        resource = Resource(
            attributes=[
                _attr("service.name", project_name),
                _attr("project_name", project_name),
                _attr("project_version_name", app_version),
                _attr("project_type", "experiment"),
            ]
        )
        spans = [span for g in gens for span in _run_spans(g)]
        request.resource_spans.append(ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)]))
    return request.SerializeToString()


def _step(g: Generation, name: str, kind: str, parent: bytes, start: int, ms: float, *extra: KeyValue) -> Span:
    return Span(
        trace_id=g.trace_id,
        span_id=secrets.token_bytes(8),
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(ms * 1e6),
        attributes=[_attr("openinference.span.kind", kind), *extra],
    )


def _run_spans(g: Generation) -> list[Span]:
    """One run: root → retrieval, a planning LLM call, a tool call, then the reply (the generation)."""
    rng = np.random.default_rng(int.from_bytes(g.trace_id[:8], "big"))
    root = secrets.token_bytes(8)
    retrieval_ms, plan_ms, tool_ms = (
        float(rng.uniform(30, 90)),
        float(rng.lognormal(5.5, 0.3)),
        float(rng.uniform(20, 120)),
    )
    start = g.start_ns - int((retrieval_ms + plan_ms + tool_ms) * 1e6)
    end = g.start_ns + int(g.latency_ms * 1e6) + 5_000_000
    at = start
    steps = []
    steps.append(_step(g, "retrieve", "RETRIEVER", root, at, retrieval_ms, _attr("input.value", "order #1234")))
    at += int(retrieval_ms * 1e6)
    plan = (
        _attr("gen_ai.span.kind", "LLM"),
        _attr("gen_ai.request.model", "gpt-4o-mini"),
        _attr("gen_ai.usage.input_tokens", int(rng.integers(250, 400))),
        _attr("gen_ai.usage.output_tokens", int(rng.integers(20, 60))),
    )
    steps.append(_step(g, "plan", "LLM", root, at, plan_ms, *plan))
    at += int(plan_ms * 1e6)
    steps.append(_step(g, "lookup_order", "TOOL", root, at, tool_ms, _attr("tool.name", "lookup_order")))
    top = Span(
        trace_id=g.trace_id,
        span_id=root,
        name="handle-request",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[_attr("openinference.span.kind", "CHAIN"), _attr("input.value", "Where is my order #1234?")],
        status=Status(code=Status.STATUS_CODE_ERROR if g.error else Status.STATUS_CODE_OK),
    )
    return [top, *steps, _reply(g, root)]


def _reply(g: Generation, parent: bytes) -> Span:
    return Span(
        trace_id=g.trace_id,
        span_id=g.span_id,
        parent_span_id=parent,
        name="reply",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=g.start_ns,
        end_time_unix_nano=g.start_ns + int(g.latency_ms * 1e6),
        attributes=[
            _attr("gen_ai.span.kind", "LLM"),
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.request.model", g.model),
            _attr("gen_ai.usage.input_tokens", g.input_tokens),
            _attr("gen_ai.usage.output_tokens", g.output_tokens),
            _attr("gen_ai.prompt.template.name", PROMPT),
            _attr("gen_ai.prompt.template.version", str(g.prompt_version)),
            _attr("gen_ai.server.time_to_first_token", g.ttft_ms),
            _attr("input.value", "Where is my order #1234?"),
            _attr("output.value", "It left our warehouse yesterday and arrives tomorrow."),
        ],
        status=Status(code=Status.STATUS_CODE_ERROR if g.error else Status.STATUS_CODE_OK),
    )


def demo_generations(runs: int = RUNS, days: float = DAYS, seed: int = 11) -> list[Generation]:
    """Version 2 and the concise app are a little faster and shorter, so that comparisons show it."""
    rng = np.random.default_rng(seed)
    now = time.time_ns()
    out = []
    for _ in range(runs):
        prompt_version = 1 + int(rng.random() < 0.6)
        app_version = APP_VERSIONS[int(rng.random() < 0.5)]
        faster = 0.85 if prompt_version == 2 else 1.0
        shorter = 0.7 if app_version == APP_VERSIONS[1] else 1.0
        latency = float(rng.lognormal(6.6, 0.5)) * faster * shorter
        out.append(
            Generation(
                trace_id=secrets.token_bytes(16),
                span_id=secrets.token_bytes(8),
                app_version=app_version,
                prompt_version=prompt_version,
                model="gpt-4o" if rng.random() < 0.8 else "gpt-4o-mini",
                start_ns=now - int(rng.random() * days * 86_400e9),
                latency_ms=latency,
                ttft_ms=latency * float(rng.uniform(0.1, 0.3)),
                input_tokens=int(rng.lognormal(6.4, 0.3)),
                output_tokens=int(rng.lognormal(5.0, 0.5) * shorter),
                error=bool(rng.random() < 0.02),
            )
        )
    return out


def _scores(generations: list[Generation], seed: int = 12) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    scores: list[dict[str, object]] = []
    for g in generations:
        if rng.random() < 0.2:
            continue
        better = 0.4 if g.prompt_version == 2 else 0.0
        base = {"trace_id": g.trace_id.hex(), "span_id": g.span_id.hex()}
        helpful = float(np.clip(np.round(rng.normal(3.6 + better, 0.8)), 1, 5))
        scores.append({**base, "name": "helpfulness", "value": helpful, "source": "eval"})
        scores.append({**base, "name": "thumbs_up", "value": bool(rng.random() < 0.7 + better / 4), "source": "api"})
    return scores


async def _prompts(http: httpx.AsyncClient, registry: str) -> bool:
    """Create the demo's prompt versions; False when they are there already (loaded before)."""
    versions = [
        ("You are a support agent. Answer {{question}} politely and completely.", ["staging"]),
        ("You are a support agent. Answer {{question}} in two sentences.", ["production"]),
    ]
    existing = await http.get(f"{registry}/api/v1/prompts/{PROMPT}/versions")
    if existing.status_code == 200 and existing.json():
        return False
    for text, labels in versions:
        body = {"name": PROMPT, "type": "text", "prompt": text, "config": {"model": "gpt-4o"}, "labels": labels}
        (await http.post(f"{registry}/api/v1/prompts", json=body)).raise_for_status()
    return True


async def load_demo(endpoints: dict[str, str], secret_key: str) -> None:
    """Load the demo workload through the registry and ingest; return once the aggregator shows it."""
    headers = {"Authorization": f"Bearer {secret_key}"}
    generations = demo_generations()
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        if not await _prompts(http, endpoints["registry_http"]):
            return  # loaded into this database before: every count stays as it was
        ingest = endpoints["ingest_http"]
        for i in range(0, len(generations), PER_REQUEST):
            body = otlp_request(generations[i : i + PER_REQUEST])
            response = await http.post(
                f"{ingest}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
            )
            response.raise_for_status()
        scores = _scores(generations)
        for i in range(0, len(scores), 500):
            (await http.post(f"{ingest}/api/v1/scores", json=scores[i : i + 500])).raise_for_status()
        await _visible(http, endpoints["aggregator"], 2 * len(generations))  # the plan and the reply


async def _visible(http: httpx.AsyncClient, aggregator: str, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await http.get(f"{aggregator}/api/v1/versions/metrics")
        if response.status_code == 200 and sum(r["generation_count"] for r in response.json()["versions"]) >= expected:
            return
        await asyncio.sleep(0.5)
