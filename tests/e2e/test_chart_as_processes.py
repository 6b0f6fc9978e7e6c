"""The chart as processes: render charts/vane, then run the migration Job's command and each Deployment's command
with exactly the environment the chart gives that container (its ConfigMap, its Secret, its own env), as local
processes, the cluster's host names resolved to 127.0.0.1. The stack that comes up must ingest a trace with the
chart's initial key and answer its metrics: the chart's wiring, not only its YAML, is right."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import Infra
from tests.support.chart import SERVICES, Manifest, container, of_kind, one, rendered
from tests.support.processes import free_port
from tests.support.scratch import drop_database, with_database

# In the cluster the datastores are Services by these names (the chart's defaults); here they listen on 127.0.0.1.
HOSTS = {"postgres": "127.0.0.1", "nats": "127.0.0.1", "redis": "127.0.0.1"}


def _named(url: str, host: str) -> str:
    """The URL with its host replaced by a cluster host name (the port and path kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{parts.port}"))


def _resolved(value: str) -> str:
    """What a cluster DNS lookup gives a URL naming a datastore Service: here, 127.0.0.1."""
    if "://" not in value:
        return value
    host = urlsplit(value).hostname or ""
    return _named(value, HOSTS[host]) if host in HOSTS else value


def _environment(manifests: list[Manifest], workload: Manifest) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom sources in order, then env."""
    env: dict[str, str] = {}
    spec = container(workload)
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env |= one(manifests, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= one(manifests, "Secret", source["secretRef"]["name"])["stringData"]
    for entry in spec.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = one(manifests, "Secret", ref["name"])["stringData"][ref["key"]]
        else:
            env[entry["name"]] = entry["value"]
    return {name: _resolved(value) for name, value in env.items()}


def _process_env(env: dict[str, str], home: Path) -> dict[str, str]:
    # Only what the chart sets, plus what any container has: a PATH (the image's venv first) and a HOME.
    return {**env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}


@pytest.fixture
def chart_values(infra: Infra) -> Iterator[dict[str, Any]]:
    database = with_database(infra.database_url, f"vane_chart_{secrets.token_hex(3)}")
    ports = {s: {"httpPort": free_port()} for s in SERVICES}
    ports["registry"]["grpcPort"] = free_port()
    ports["ingest"]["grpcPort"] = free_port()
    values = {
        "datastores": {
            "databaseUrl": _named(database, "postgres"),
            "natsUrl": _named(infra.nats_url, "nats"),
            "redisUrl": _named(infra.redis_url, "redis"),
        },
        "initProject": {
            "name": "chart-app",
            "publicKey": "pk-vane-chart",
            "secretKey": f"sk-vane-{secrets.token_hex(8)}",
        },
        "config": {
            "VANE_NAMESPACE": f"{infra.namespace}c{secrets.token_hex(2)}",
            "VANE_STREAM_MAX_BYTES": str(64 * 1024**2),
            "VANE_SHUTDOWN_GRACE_SECONDS": "3",
        },
        "services": ports,
    }
    yield values
    asyncio.run(drop_database(database))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready:\n{log.read_text()[-3000:]}")


def _span(trace_id: str) -> bytes:
    now = time.time_ns()
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "50"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "7"}},
    ]
    span = {"traceId": trace_id, "spanId": secrets.token_hex(8), "name": "chat", "attributes": attributes}
    span |= {"startTimeUnixNano": str(now - 250_000_000), "endTimeUnixNano": str(now)}
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"stringValue": "chart-app"}},
            {"key": "project_version_name", "value": {"stringValue": "as-rendered"}},
        ]
    }
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}).encode()


def test_the_rendered_chart_run_as_processes_ingests_a_trace_and_answers_its_metrics(
    chart_values: dict[str, Any], tmp_path: Path
) -> None:
    manifests = rendered(chart_values)
    (job,) = of_kind(manifests, "Job")
    migrate = subprocess.run(
        container(job)["command"], env=_process_env(_environment(manifests, job), tmp_path), capture_output=True
    )
    assert migrate.returncode == 0, migrate.stdout.decode() + migrate.stderr.decode()

    running: list[subprocess.Popen[bytes]] = []
    try:
        for service in SERVICES:
            deployment = one(manifests, "Deployment", f"vane-{service}")
            log = tmp_path / f"{service}.log"
            with log.open("wb") as out:
                env = _process_env(_environment(manifests, deployment), tmp_path)
                running.append(subprocess.Popen(container(deployment)["command"], env=env, stdout=out, stderr=out))
        for service, proc in zip(SERVICES, running, strict=True):
            port = chart_values["services"][service]["httpPort"]
            _wait_ready(f"http://127.0.0.1:{port}", proc, tmp_path / f"{service}.log")

        key = {"Authorization": f"Bearer {chart_values['initProject']['secretKey']}"}
        ingest = f"http://127.0.0.1:{chart_values['services']['ingest']['httpPort']}/v1/traces"
        sent = httpx.post(
            ingest, content=_span(secrets.token_hex(16)), headers={**key, "Content-Type": "application/json"}
        )
        assert sent.status_code == 200, sent.text

        metrics = f"http://127.0.0.1:{chart_values['services']['aggregator']['httpPort']}/api/v1/versions/metrics"
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not rows:
            body = httpx.get(metrics, params={"project_name": "chart-app"}, headers=key, timeout=5).json()
            rows = [r for r in body["versions"] if r["version"] == "as-rendered" and r["generation_count"]]
            time.sleep(0.3)
        assert rows, "the trace never reached the metrics"
        assert (rows[0]["generation_count"], rows[0]["total_input_tokens"]) == (1, 50)
    finally:
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
