"""PII redaction at a real ingest: a project's rules apply to what its spans carry before they reach
JetStream, with a count on each span; another project's spans are untouched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from vane.v1.bus_pb2 import CanonicalSpan

from tests.conftest import Infra
from tests.integration.test_ingest_otlp import export, finished_spans, read_stream
from tests.support.processes import ServiceProcess

CONVERSATION = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o",
    "input.value": json.dumps(
        [
            {
                "role": "user",
                "content": "I'm Ana (ana.silva@example.com, +351 912 345 678). Card 4111-1111-1111-1111 "
                "was charged twice for order ORD-482913.",
            }
        ]
    ),
    "output.value": "Sorry Ana! I've refunded ORD-482913 to the card ending 1111; we'll email ana.silva@example.com.",
}
RULES = {
    "detectors": ["api_key", "card", "email", "phone"],
    "patterns": [{"name": "order_id", "regex": "ORD-[0-9]{6}"}],
}


@pytest.fixture(scope="module")
def ingest(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("ingest", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


async def test_a_projects_rules_redact_its_spans_before_they_are_published(
    ingest: ServiceProcess, infra: Infra, make_project: Callable[..., Any]
) -> None:
    strict, relaxed = await make_project(), await make_project()
    async with httpx.AsyncClient(base_url=ingest.url, headers=strict.bearer, timeout=10) as api:
        assert (await api.get("/api/v1/redaction")).json() == {"detectors": [], "patterns": []}
        put = await api.put("/api/v1/redaction", json=RULES)
        assert put.status_code == 200, put.text
        assert (await api.get("/api/v1/redaction")).json() == RULES
        bad = await api.put("/api/v1/redaction", json={"patterns": [{"name": "x", "regex": "(a)\\1"}]})
        assert bad.status_code == 400 and "RE2" in bad.json()["error"]["message"]

    for project in (strict, relaxed):
        exporter = HttpExporter(endpoint=f"{ingest.url}/v1/traces", headers=project.bearer)
        assert await export(exporter, finished_spans(1, CONVERSATION)) == SpanExportResult.SUCCESS

    [span] = await read_stream(infra, "spans", str(strict.id), 1)
    assert isinstance(span, CanonicalSpan)
    stored = span.input + span.output + span.attributes_json
    for secret in ("ana.silva@example.com", "912 345 678", "4111-1111-1111-1111", "ORD-482913"):
        assert secret not in stored
    assert json.loads(span.input)[0]["content"] == (
        "I'm Ana ([REDACTED:email], [REDACTED:phone]). Card [REDACTED:card] was charged twice for order "
        "[REDACTED:order_id]."
    )
    assert span.output == (
        "Sorry Ana! I've refunded [REDACTED:order_id] to the card ending 1111; we'll email [REDACTED:email]."
    )
    assert json.loads(span.attributes_json)["vane.redacted"] == {"card": 1, "email": 2, "phone": 1, "order_id": 2}

    [untouched] = await read_stream(infra, "spans", str(relaxed.id), 1)
    assert "ana.silva@example.com" in untouched.input and "vane.redacted" not in untouched.attributes_json

    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{ingest.url}/metrics")).text
    assert 'vane_ingest_redactions_total{detector="email"}' in metrics
