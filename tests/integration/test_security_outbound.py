"""Outbound URLs against real listeners: the evaluator refuses judge endpoints inside the cloud's
metadata or link-local ranges (and private ones when the operator says so), the judge follows no
redirect and checks names as they resolve, and the webhook transport checks every redirect hop."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.common.outbound import GuardedTransport, OutboundPolicy, OutboundRefused
from services.evaluator.config import JudgeDefaults
from services.evaluator.judge import Judge
from services.evaluator.outcomes import EvaluationFailed
from tests.conftest import Infra, Project
from tests.support.processes import ServiceProcess

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@dataclass
class Listener:
    """A local HTTP server: /v1/chat/completions answers a verdict, /jump/... redirects where told."""

    url: str = ""
    seen: list[str] = field(default_factory=list)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()

    async def verdict(request: web.Request) -> web.Response:
        found.seen.append(request.path)
        content = '{"score": 1, "explanation": "fine"}'
        return web.json_response({"choices": [{"message": {"content": content}}], "usage": {}})

    async def jump(request: web.Request) -> web.Response:
        found.seen.append(request.path)
        raise web.HTTPTemporaryRedirect(request.query["to"])

    async def hook(request: web.Request) -> web.Response:
        found.seen.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", verdict)
    app.router.add_post("/jump/chat/completions", jump)
    app.router.add_route("*", "/jump", jump)
    app.router.add_route("*", "/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


def _judge_config(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "model": "gpt-4o-mini", "retries": 2, "rubric": "helpfulness"}


async def test_the_judge_follows_no_redirect_into_the_metadata_service(listener: Listener) -> None:
    judge = Judge(JudgeDefaults(backoff_seconds=0.01))
    inputs = {"input": "hi", "output": "hello"}
    try:
        ok = await judge.judge("p", inputs, _judge_config(f"{listener.url}/v1"))
        assert ok.value == 1
        with pytest.raises(EvaluationFailed) as refused:
            await judge.judge("p", inputs, _judge_config(f"{listener.url}/jump?to={METADATA}&x="))
    finally:
        await judge.close()
    assert "redirects are not followed" in str(refused.value)
    assert listener.seen == ["/v1/chat/completions", "/jump"]  # refused once, not retried


async def test_the_judge_checks_a_name_by_the_address_it_connects_to(listener: Listener) -> None:
    port = listener.url.rsplit(":", 1)[1]
    judge = Judge(JudgeDefaults(backoff_seconds=0.01), OutboundPolicy(allow_private=False))
    try:
        with pytest.raises(EvaluationFailed) as refused:
            await judge.judge("p", {"input": "a", "output": "b"}, _judge_config(f"http://localhost:{port}/v1"))
    finally:
        await judge.close()
    assert "private or loopback" in str(refused.value)
    assert listener.seen == []


async def test_the_webhook_transport_checks_every_redirect_hop(listener: Listener) -> None:
    async with httpx.AsyncClient(transport=GuardedTransport(OutboundPolicy()), follow_redirects=True) as client:
        followed = await client.post(f"{listener.url}/jump", params={"to": f"{listener.url}/hook"})
        assert followed.status_code == 200 and followed.text == "ok"
        with pytest.raises(OutboundRefused):
            await client.post(f"{listener.url}/jump", params={"to": METADATA})
        with pytest.raises(OutboundRefused):
            await client.post("http://[fd00:ec2::254]/latest/meta-data/")
    assert listener.seen == ["/jump", "/hook", "/jump"]
    strict = GuardedTransport(OutboundPolicy(allow_private=False))
    async with httpx.AsyncClient(transport=strict) as client:
        with pytest.raises(OutboundRefused):
            await client.post(f"{listener.url}/hook")


@pytest.fixture(scope="module")
def evaluators(infra: Infra) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    default = ServiceProcess("evaluator", infra.env(), infra.log_dir)
    strict = ServiceProcess("evaluator", infra.env(VANE_ALLOW_PRIVATE_URLS="false"), infra.log_dir)
    try:
        for proc in (default, strict):
            proc.start(wait=False)
        for proc in (default, strict):
            proc.wait_ready()
        yield default, strict
    finally:
        default.kill()
        strict.kill()


async def _rule(evaluator: ServiceProcess, project: Project, base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=evaluator.url, headers=project.bearer, timeout=10) as client:
        body = {"evaluator": "llm_judge", "name": f"judge-{secrets.token_hex(3)}", "config": {"base_url": base_url}}
        return await client.post("/api/v1/evaluators", json=body)


async def test_an_evaluator_rule_aiming_its_judge_inside_is_refused(
    evaluators: tuple[ServiceProcess, ServiceProcess], make_project: Any, listener: Listener
) -> None:
    default, strict = evaluators
    project = await make_project()
    for url in [METADATA, "http://metadata.google.internal/computeMetadata/v1", "http://[fd00:ec2::254]/v1"]:
        refused = await _rule(default, project, url)
        assert refused.status_code == 400, (url, refused.text)
        assert "refusing to call" in refused.json()["error"]["message"]
    assert (await _rule(default, project, f"{listener.url}/v1")).status_code == 201
    refused = await _rule(strict, project, f"{listener.url}/v1")
    assert refused.status_code == 400 and "VANE_ALLOW_PRIVATE_URLS" in refused.json()["error"]["message"]
    assert (await _rule(strict, project, "http://localhost:9/v1")).status_code == 400
    created = (await _rule(default, project, f"{listener.url}/v1")).json()
    async with httpx.AsyncClient(base_url=default.url, headers=project.bearer, timeout=10) as client:
        moved = await client.patch(f"/api/v1/evaluators/{created['id']}", json={"config": {"base_url": METADATA}})
    assert moved.status_code == 400
