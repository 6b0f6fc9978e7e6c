"""The evaluator service end to end: real NATS and Postgres, a real `vane serve evaluator` process,
span batches on the spans stream, scores read back from the scores stream, and a local server that
speaks the chat-completions protocol as the LLM judge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from vane.v1 import bus_pb2

from services.common.bus import Bus, Topology
from services.common.payload import ENCODING_HEADER, ZSTD
from tests.conftest import Infra, Project
from tests.support.chat_completions import ChatCompletionsServer
from tests.support.processes import ServiceProcess

EVALUATOR_ENV = {
    "VANE_JUDGE_TIMEOUT_SECONDS": "1",
    "VANE_JUDGE_RETRIES": "2",
    "VANE_JUDGE_BACKOFF_SECONDS": "0.05",
    "VANE_EVALUATOR_MAX_DELIVERIES": "3",
    "VANE_EVALUATOR_REDELIVERY_DELAY_SECONDS": "0.2",
    "VANE_EVALUATOR_RULES_TTL_SECONDS": "0.2",
    "VANE_JUDGE_MODEL": "gpt-4o-mini",
    # The shared NATS reserves each stream's max bytes on disk: keep this run's streams small.
    "VANE_STREAM_MAX_BYTES": str(256 * 1024**2),
}


@pytest.fixture(scope="module")
def judge() -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def evaluator(infra: Infra, judge: ChatCompletionsServer) -> Iterator[ServiceProcess]:
    env = infra.env(**EVALUATOR_ENV, VANE_JUDGE_BASE_URL=judge.base_url("ok"))
    proc = ServiceProcess("evaluator", env, infra.log_dir).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
async def bus(infra: Infra, evaluator: ServiceProcess) -> AsyncIterator[Bus]:
    nc = await nats.connect(infra.nats_url)
    yield Bus(nc, Topology(infra.namespace))
    await nc.close()


def a_span(project: Project, **fields: Any) -> bus_pb2.CanonicalSpan:
    attributes = fields.pop("attributes", {})
    tags = fields.pop("eval_tags", None)
    base: dict[str, Any] = {
        "project_id": str(project.id),
        "trace_id": os.urandom(16),
        "span_id": os.urandom(8),
        "name": "reply",
        "kind": "llm",
        "app_version": "v1",
        "model": "gpt-4o-mini",
        "input": "What is the capital of France?",
        "output": "Paris is the capital of France.",
        "attributes_json": json.dumps(attributes),
        "eval_tags_json": json.dumps(tags) if tags is not None else "",
        "status": bus_pb2.SPAN_STATUS_OK,
    }
    return bus_pb2.CanonicalSpan(**{**base, **fields})


async def publish_spans(bus: Bus, project: Project, spans: list[bus_pb2.CanonicalSpan], msg_id: str = "") -> None:
    batch = bus_pb2.SpanBatch(schema_version=1, project_id=str(project.id), spans=spans)
    await bus.publish(
        bus.topology.spans_subject, batch.SerializeToString(), msg_id=msg_id or str(uuid.uuid4()), compress=True
    )


class ScoreReader:
    """A project's scores as they reach the scores stream. Open it before publishing: the stream keeps
    a message only while some consumer has yet to ack it, so this reader is one of those consumers."""

    def __init__(self, bus: Bus, project: Project) -> None:
        self.bus = bus
        self.project = project
        self.scores: list[bus_pb2.Score] = []  # one entry per stored message
        self._sub: Any = None

    async def open(self) -> ScoreReader:
        self._sub = await self.bus.js.pull_subscribe(
            self.bus.topology.scores_subject,
            stream=self.bus.topology.scores_stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, inactive_threshold=300.0, ack_wait=300.0),
        )
        return self

    async def read(self) -> list[bus_pb2.Score]:
        while True:
            try:
                msgs = await self._sub.fetch(batch=1000, timeout=0.3)
            except (TimeoutError, nats.errors.TimeoutError):
                return self.scores
            for msg in msgs:
                batch = bus_pb2.ScoreBatch.FromString(msg.data)
                self.scores.extend(s for s in batch.scores if s.project_id == str(self.project.id))
                await msg.ack()

    async def eventually(self, count: int, timeout: float = 60.0) -> list[bus_pb2.Score]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if len(await self.read()) >= count or asyncio.get_running_loop().time() > deadline:
                return self.scores
            await asyncio.sleep(0.2)

    async def settled(self, count: int) -> list[bus_pb2.Score]:
        """The scores once `count` arrived, re-read after a pause so that any extra one would show."""
        await self.eventually(count)
        await asyncio.sleep(1.5)
        return await self.read()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


@pytest.fixture
async def scores_of(bus: Bus) -> AsyncIterator[Any]:
    readers: list[ScoreReader] = []

    async def open_reader(project: Project) -> ScoreReader:
        readers.append(await ScoreReader(bus, project).open())
        return readers[-1]

    yield open_reader
    for reader in readers:
        await reader.close()


async def drained(bus: Bus, timeout: float = 60.0) -> None:
    """Until the evaluator's consumer has acked every span message on the stream."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        info = await bus.js.consumer_info(bus.topology.spans_stream, Topology.EVALUATOR_SPANS)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.2)


def api(evaluator: ServiceProcess, project: Project) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=evaluator.url, headers=project.bearer, timeout=10)


async def create_rule(service: ServiceProcess, project: Project, /, **body: Any) -> dict[str, Any]:
    async with api(service, project) as client:
        response = await client.post("/api/v1/evaluators", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_rule_based_rules_score_the_spans_their_filter_matches(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(evaluator, project, evaluator="contains", name="mentions_paris", config={"value": "Paris"})
    await create_rule(
        evaluator, project, evaluator="length", name="words", filter={"app_version": "v2"}, config={"unit": "words"}
    )
    await publish_spans(bus, project, [a_span(project, app_version="v1"), a_span(project, app_version="v2")])

    scores = await scores_reader.settled(3)
    assert sorted(s.name for s in scores) == ["mentions_paris", "mentions_paris", "words"]
    contains = next(s for s in scores if s.name == "mentions_paris")
    assert contains.source == bus_pb2.SCORE_SOURCE_EVAL
    assert (contains.evaluator_name, contains.evaluator_version) == ("contains", "1")
    assert contains.data_type == bus_pb2.SCORE_DATA_TYPE_BOOLEAN and contains.value == 1.0
    assert "present ['Paris']" in contains.comment
    words = next(s for s in scores if s.name == "words")
    assert words.value == 6.0 and words.data_type == bus_pb2.SCORE_DATA_TYPE_NUMERIC

    async with api(evaluator, project) as client:
        listed = (await client.get("/api/v1/evaluations")).json()["evaluations"]
    assert len(listed) == 3 and {e["status"] for e in listed} == {"ok"}


async def test_traceai_eval_tags_score_only_the_span_kind_they_target(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    tags = [
        {
            "type": "OBSERVATION_SPAN_TYPE",
            "value": "LLM",
            "eval_name": "is_json",
            "config": {},
            "mapping": {"text": "output.value"},
            "custom_eval_name": "answer_is_json",
            "model": "turing_flash",
        }
    ]
    spans = [
        a_span(project, kind="llm", output='{"answer": "Paris"}', eval_tags=tags),
        a_span(project, kind="llm", output="Paris", eval_tags=tags, attributes={"output.value": "not json"}),
        a_span(project, kind="tool", output="{}", eval_tags=tags),
    ]
    await publish_spans(bus, project, spans)

    scores = await scores_reader.settled(2)
    by_span = {s.span_id: s for s in scores}
    assert len(scores) == 2 and set(by_span) == {spans[0].span_id, spans[1].span_id}
    assert by_span[spans[0].span_id].value == 1.0 and by_span[spans[1].span_id].value == 0.0
    assert all(s.name == "answer_is_json" and s.evaluator_name == "is_json" for s in scores)


async def test_sampling_at_a_tenth_scores_about_a_tenth_of_the_spans(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(evaluator, project, evaluator="is_json", sampling_rate=0.1)
    for _ in range(6):
        await publish_spans(bus, project, [a_span(project) for _ in range(50)])
    await drained(bus)  # no count to wait for: every span message acked
    scores = await scores_reader.settled(1)
    assert 10 <= len(scores) <= 55, len(scores)  # binomial(300, 0.1): mean 30, sd 5.2


async def test_llm_judge_scores_with_its_explanation_and_token_cost(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(evaluator, project, evaluator="llm_judge", name="helpfulness", config={"rubric": "helpfulness"})
    span = a_span(project)
    await publish_spans(bus, project, [span])

    [score] = await scores_reader.settled(1)
    assert (score.name, score.evaluator_name, score.value) == ("helpfulness", "llm_judge", 0.75)
    assert score.comment == "judged by the test server" and not score.is_error
    assert score.HasField("eval_cost") and score.eval_cost == pytest.approx((120 * 0.15 + 30 * 0.60) / 1e6)
    sent = next(b for b in reversed(judge.bodies) if span.output in json.dumps(b))
    assert sent["model"] == "gpt-4o-mini" and sent["response_format"] == {"type": "json_object"}


async def test_judge_answering_429_is_retried_after_its_retry_after_and_then_scores(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    flaky = f"flaky-2-{uuid.uuid4().hex[:8]}"  # two failures, then answers: within one delivery's retries
    await create_rule(evaluator, project, evaluator="llm_judge", config={"base_url": judge.base_url(flaky)})
    await publish_spans(bus, project, [a_span(project)])
    [score] = await scores_reader.settled(1)
    assert not score.is_error and score.value == 0.75
    assert judge.requests[flaky] == 3


async def test_judge_answering_non_json_records_an_error_and_never_a_score(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(evaluator, project, evaluator="llm_judge", config={"base_url": judge.base_url("nonjson")})
    await publish_spans(bus, project, [a_span(project)])

    [score] = await scores_reader.settled(1)
    assert score.is_error and score.value == 0.0 and "non-JSON" in score.comment
    async with api(evaluator, project) as client:
        errors = (await client.get("/api/v1/evaluations", params={"status": "error"})).json()["evaluations"]
        metrics = (await client.get("/metrics")).text
    assert len(errors) == 1 and errors[0]["value"] is None and "non-JSON" in errors[0]["comment"]
    assert 'vane_evaluator_evaluation_errors_total{evaluator="llm_judge"}' in metrics


async def test_judge_that_times_out_keeps_the_span_for_its_budget_then_records_an_error(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    before = judge.requests["timeout"]
    await create_rule(evaluator, project, evaluator="llm_judge", config={"base_url": judge.base_url("timeout")})
    await publish_spans(bus, project, [a_span(project)])

    [score] = await scores_reader.settled(1)
    assert score.is_error and "timed out" in score.comment and "delivered 3 times" in score.comment
    assert judge.requests["timeout"] - before == 3 * 3  # three deliveries of three attempts each


async def test_span_survives_a_judge_outage_and_is_scored_when_it_is_back(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    flaky = f"flaky-4-{uuid.uuid4().hex[:8]}"  # the first delivery's three attempts and one more fail
    await create_rule(evaluator, project, evaluator="llm_judge", config={"base_url": judge.base_url(flaky)})
    await create_rule(evaluator, project, evaluator="is_json")
    await publish_spans(bus, project, [a_span(project)])

    scores = await scores_reader.settled(2)
    judged = [s for s in scores if s.name == "llm_judge"]
    assert len(judged) == 1 and not judged[0].is_error and judge.requests[flaky] == 5
    assert len({s.score_id for s in scores}) == 2


async def test_a_redelivered_span_gives_one_score_and_one_judge_call(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, judge: ChatCompletionsServer, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    path = f"ok-once-{uuid.uuid4().hex[:8]}"
    await create_rule(evaluator, project, evaluator="llm_judge", config={"base_url": f"{judge.url}/{path}/v1"})
    span = a_span(project)
    await publish_spans(bus, project, [span])
    await scores_reader.eventually(1)
    for _ in range(2):  # the same batch again, as a retried export or a redelivery brings it
        await publish_spans(bus, project, [span])

    scores = await scores_reader.settled(1)
    assert len(scores) == 1 and judge.requests[path] == 1
    async with api(evaluator, project) as client:
        assert len((await client.get("/api/v1/evaluations")).json()["evaluations"]) == 1


async def test_embedding_similarity_scores_paraphrases_high_and_unrelated_text_low(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(
        evaluator,
        project,
        evaluator="embedding_similarity",
        mapping={"reference": "expected"},
    )
    close = a_span(project, attributes={"expected": "The capital city of France is Paris."})
    far = a_span(project, attributes={"expected": "Quarterly revenue grew by ten percent."})
    await publish_spans(bus, project, [close, far])

    scores = {s.span_id: s.value for s in await scores_reader.settled(2)}
    assert scores[close.span_id] > 0.7 > 0.3 > scores[far.span_id]


async def test_an_undecodable_message_is_dead_lettered_and_the_rest_goes_on(
    evaluator: ServiceProcess, bus: Bus, make_project: Any, scores_of: Any
) -> None:
    project = await make_project()
    scores_reader = await scores_of(project)
    await create_rule(evaluator, project, evaluator="is_json")
    await bus.publish(bus.topology.spans_subject, b"\xff\xfenot a span batch", msg_id=str(uuid.uuid4()))
    # marked compressed, but not a zstd frame
    await bus.js.publish(bus.topology.spans_subject, b"not zstd either", headers={ENCODING_HEADER: ZSTD})
    await publish_spans(bus, project, [a_span(project)])
    assert len(await scores_reader.eventually(1)) == 1
    info = await bus.js.stream_info(bus.topology.dead_letter_stream)
    assert info.state.messages >= 2


async def test_evaluator_rules_api_creates_lists_updates_disables_and_isolates_projects(
    evaluator: ServiceProcess, make_project: Any
) -> None:
    project, other = await make_project(), await make_project()
    rule = await create_rule(
        evaluator,
        project,
        evaluator="regex",
        name="has_order_number",
        filter={"prompt_name": "support", "model": "gpt-4o*"},
        mapping={"output": "gen_ai.output.messages.0.content"},
        sampling_rate=0.5,
        config={"pattern": r"#\d+"},
    )
    assert rule["enabled"] and rule["evaluator_version"] == "1" and rule["sampling_rate"] == 0.5
    async with api(evaluator, project) as client:
        assert (
            await client.post(
                "/api/v1/evaluators",
                json={"evaluator": "regex", "name": "has_order_number", "config": {"pattern": "x"}},
            )
        ).status_code == 409
        bad = await client.post("/api/v1/evaluators", json={"evaluator": "regex", "config": {"pattern": "(oops"}})
        assert bad.status_code == 400 and "regular expression" in bad.json()["error"]["message"]
        assert (await client.post("/api/v1/evaluators", json={"evaluator": "vibes"})).status_code == 400
        assert (
            await client.post("/api/v1/evaluators", json={"evaluator": "is_json", "sampling_rate": 2})
        ).status_code == 400
        changed = await client.patch(f"/api/v1/evaluators/{rule['id']}", json={"enabled": False, "sampling_rate": 1})
        assert changed.status_code == 200 and not changed.json()["enabled"]
        assert changed.json()["config"] == {"pattern": r"#\d+"}
        listed = (await client.get("/api/v1/evaluators")).json()["evaluators"]
        assert [r["name"] for r in listed] == ["has_order_number"]
        catalogue = (await client.get("/api/v1/evaluators/catalogue")).json()
        names = {e["name"] for e in catalogue["evaluators"]}
        assert {
            "llm_judge",
            "embedding_similarity",
            "is_json",
            "json_schema",
            "regex",
            "contains",
            "exact_match",
            "levenshtein",
            "length",
        } <= names
    async with api(evaluator, other) as client:
        assert (await client.get(f"/api/v1/evaluators/{rule['id']}")).status_code == 404
        assert (await client.patch(f"/api/v1/evaluators/{rule['id']}", json={"enabled": True})).status_code == 404
        assert (await client.get("/api/v1/evaluators")).json()["evaluators"] == []
    async with httpx.AsyncClient(base_url=evaluator.url) as anonymous:
        assert (await anonymous.get("/api/v1/evaluators")).status_code == 401
    async with api(evaluator, project) as client:
        assert (await client.delete(f"/api/v1/evaluators/{rule['id']}")).status_code == 204
        assert (await client.get(f"/api/v1/evaluators/{rule['id']}")).status_code == 404
