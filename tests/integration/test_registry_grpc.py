"""`vane.v1.PromptService` over gRPC, and two registry replicas kept consistent through NATS."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import grpc
import pytest
from vane.v1 import prompts_pb2 as pb
from vane.v1 import prompts_pb2_grpc

from services.common.auth import create_project
from tests.conftest import Infra, Project
from tests.support.processes import ServiceProcess

DEADLINE_SECONDS = 10.0


@pytest.fixture(scope="module")
def replicas(infra: Infra) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    a = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    b = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield a, b
    a.kill()
    b.kill()


@pytest.fixture
async def project(pool: asyncpg.Pool) -> Project:
    async with pool.acquire() as conn:
        project_id, keys = await create_project(conn, f"grpc-{secrets.token_hex(4)}")
    return Project(project_id, "grpc", keys)


@pytest.fixture
async def stubs(
    replicas: tuple[ServiceProcess, ServiceProcess],
) -> AsyncIterator[Callable[[int], prompts_pb2_grpc.PromptServiceStub]]:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{r.grpc_port}") for r in replicas]
    yield lambda i: prompts_pb2_grpc.PromptServiceStub(channels[i])
    for channel in channels:
        await channel.close()


def _auth(project: Project) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {project.keys.secret_key}"),)


async def test_get_prompt_by_label_and_version_with_typed_errors(
    stubs: Callable[[int], prompts_pb2_grpc.PromptServiceStub], project: Project
) -> None:
    stub, md = stubs(0), _auth(project)
    created = await stub.CreatePrompt(
        pb.CreatePromptRequest(name="g", text="Hi {{who}}", labels=["production"], config_json='{"n": 1}'), metadata=md
    )
    assert (created.prompt.version, list(created.prompt.variables)) == (1, ["who"])
    got = await stub.GetPrompt(pb.GetPromptRequest(name="g"), metadata=md)
    assert (got.prompt.version, got.prompt.text, got.resolved_label) == (1, "Hi {{who}}", "production")
    assert json.loads(got.prompt.config_json) == {"n": 1} and len(got.split) == 0
    by_version = await stub.GetPrompt(pb.GetPromptRequest(name="g", version=1), metadata=md)
    assert by_version.prompt.labels == ["latest", "production"]
    for request, metadata, code in [
        (pb.GetPromptRequest(name="g", label="nope"), md, grpc.StatusCode.NOT_FOUND),
        (pb.GetPromptRequest(name=""), md, grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetPromptRequest(name="g"), (("authorization", "Bearer sk-vane-wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        (pb.GetPromptRequest(name="g"), (), grpc.StatusCode.UNAUTHENTICATED),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetPrompt(request, metadata=metadata)
        assert caught.value.code() == code
        assert "error" in json.loads(caught.value.details() or "{}")


async def test_list_set_labels_and_split_over_grpc(
    stubs: Callable[[int], prompts_pb2_grpc.PromptServiceStub], project: Project
) -> None:
    stub, md = stubs(0), _auth(project)
    chat = [pb.ChatMessage(role="system", content="Be {{tone}}"), pb.ChatMessage(type="placeholder", name="history")]
    await stub.CreatePrompt(pb.CreatePromptRequest(name="c", type="chat", messages=chat), metadata=md)
    await stub.CreatePrompt(pb.CreatePromptRequest(name="c", type="chat", messages=chat[:1]), metadata=md)
    moved = await stub.SetLabels(pb.SetLabelsRequest(name="c", version=1, labels=["production"]), metadata=md)
    assert list(moved.prompt.labels) == ["production"]
    listed = await stub.ListPrompts(pb.ListPromptsRequest(), metadata=md)
    assert [(p.name, [v.version for v in p.versions]) for p in listed.prompts] == [("c", [2, 1])]
    split = pb.SetLabelSplitRequest(
        name="c",
        label="production",
        weights=[pb.VersionWeight(version=1, weight=3), pb.VersionWeight(version=2, weight=1)],
    )
    answer = await stub.SetLabelSplit(split, metadata=md)
    assert [(w.prompt.version, w.weight) for w in answer.split] == [(1, 3), (2, 1)]
    got = await stub.GetPrompt(pb.GetPromptRequest(name="c", sticky_key="u1"), metadata=md)
    assert len(got.split) == 2 and got.prompt.version in (1, 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetLabels(pb.SetLabelsRequest(name="c", version=1, labels=["latest"]), metadata=md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_label_move_on_one_replica_is_served_and_pushed_by_the_other(
    stubs: Callable[[int], prompts_pb2_grpc.PromptServiceStub], project: Project, pool: asyncpg.Pool
) -> None:
    a, b, md = stubs(0), stubs(1), _auth(project)
    await a.CreatePrompt(pb.CreatePromptRequest(name="shared", text="one", labels=["production"]), metadata=md)
    await a.CreatePrompt(pb.CreatePromptRequest(name="shared", text="two"), metadata=md)
    assert (await b.GetPrompt(pb.GetPromptRequest(name="shared"), metadata=md)).prompt.version == 1  # now cached on b
    async with pool.acquire() as conn:
        _, other_keys = await create_project(conn, f"other-{secrets.token_hex(4)}")
    other = b.WatchPrompts(pb.WatchPromptsRequest(), metadata=(("authorization", f"Bearer {other_keys.secret_key}"),))
    watch = b.WatchPrompts(pb.WatchPromptsRequest(), metadata=md)
    assert (await watch.read()).kind == "watching" and (await other.read()).kind == "watching"
    await a.SetLabels(pb.SetLabelsRequest(name="shared", version=2, labels=["production"]), metadata=md)
    event = await asyncio.wait_for(watch.read(), DEADLINE_SECONDS)
    assert (event.name, event.version, list(event.labels), event.kind) == ("shared", 2, ["production"], "labels_moved")
    assert (await b.GetPrompt(pb.GetPromptRequest(name="shared"), metadata=md)).prompt.version == 2
    await a.CreatePrompt(pb.CreatePromptRequest(name="shared", text="three"), metadata=md)
    event = await asyncio.wait_for(watch.read(), DEADLINE_SECONDS)
    assert (event.version, list(event.labels), event.kind) == (3, ["latest"], "version_created")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(other.read(), 0.5)  # another project's watcher hears nothing of it
    watch.cancel()
    other.cancel()
