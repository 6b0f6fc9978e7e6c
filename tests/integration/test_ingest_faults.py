"""Ingest when NATS is gone: 503 with Retry-After and nothing half-written; once NATS is back the
client's retry lands every span exactly once. And several worker processes sharing the ports."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import Infra
from tests.integration.test_ingest_otlp import finished_spans, read_stream
from tests.support.processes import REPO, ServiceProcess, free_port, port_open

NATS_SERVER = REPO / ".venv" / "bin" / "nats-server"


class OwnNats:
    """A NATS server of this test's own, stopped and started again on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-js", "-sd", str(self.store), "-p", str(self.port), "-a", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_nats() -> Iterator[OwnNats]:
    with tempfile.TemporaryDirectory() as store:
        server = OwnNats(Path(store))
        server.start()
        yield server
        server.stop()


async def test_nats_down_answers_503_and_the_retry_lands_every_span_exactly_once(
    infra: Infra, own_nats: OwnNats, make_project: Any, start_service: Any
) -> None:
    project = await make_project()
    ingest = start_service("ingest", VANE_NATS_URL=own_nats.url, VANE_INGEST_PUBLISH_TIMEOUT_SECONDS="1")
    own_infra = Infra(infra.database_url, own_nats.url, infra.redis_url, infra.namespace, infra.log_dir)
    headers = {**project.bearer, "Content-Type": "application/x-protobuf"}
    before = encode_spans(finished_spans(5)).SerializeToString()
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.post(f"{ingest.url}/v1/traces", content=before, headers=headers)).status_code == 200

        own_nats.stop()
        during = finished_spans(20)
        refused = await client.post(
            f"{ingest.url}/v1/traces", content=encode_spans(during).SerializeToString(), headers=headers
        )
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await client.get(f"{ingest.url}/readyz")).status_code == 503

    # The real exporter retries 503s with backoff; NATS comes back while it does.
    exporter = OTLPSpanExporter(endpoint=f"{ingest.url}/v1/traces", headers=project.bearer, timeout=60)
    retrying = asyncio.create_task(asyncio.to_thread(exporter.export, during))
    await asyncio.sleep(1.5)
    own_nats.start()
    assert await retrying == SpanExportResult.SUCCESS

    landed = await read_stream(own_infra, "spans", str(project.id), 25)
    assert len(landed) == 25
    assert len({s.span_id for s in landed}) == 25  # none twice: the refused attempt and the retry share one id


async def test_several_worker_processes_share_the_ports(infra: Infra, make_project: Any, start_service: Any) -> None:
    project = await make_project()
    ingest: ServiceProcess = start_service("ingest", VANE_INGEST_WORKERS="2")
    headers = {**project.bearer, "Content-Type": "application/x-protobuf"}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(20):
            body = encode_spans(finished_spans(3)).SerializeToString()
            assert (await client.post(f"{ingest.url}/v1/traces", content=body, headers=headers)).status_code == 200
    assert len(await read_stream(infra, "spans", str(project.id), 60)) == 60
