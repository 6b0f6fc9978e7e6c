"""Future AGI's traceAI system evals, written as its own docs write them, against Vane: traceAI's
mapping keys and custom_eval_name are accepted at register() and score under the user's name; an
eval Vane cannot run is refused there, with a message naming what Vane runs instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from services.common.bus import Bus
from tests.integration.test_evaluator import ScoreReader
from tests.support.processes import ServiceProcess
from tests.support.traceai import point_at, traceai_register


def emit(provider: Any, output: str, expected: str) -> None:
    attributes = {
        "gen_ai.span.kind": "LLM",
        "gen_ai.request.model": "gpt-4o-mini",
        "output.value": output,
        "expected.text": expected,
    }
    provider.get_tracer("test").start_span("llm-step", attributes=attributes).end()


async def test_traceai_system_evals_take_traceai_mapping_keys_and_score_under_the_given_name(
    run_bus: Bus,
    make_project: Any,
    start_service: Callable[..., ServiceProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fi_instrumentation.fi_types import EvalName, EvalSpanKind, EvalTag, EvalTagType, ModelChoices

    ingest = start_service("ingest")
    start_service("evaluator")
    project = await make_project()
    scores = await ScoreReader(run_bus, project).open()
    point_at(monkeypatch, ingest.url, project.keys.public_key, project.keys.secret_key)

    def tags() -> list[Any]:  # EvalTag(...) asks the server about its eval: off the event loop
        return [
            EvalTag(
                type=EvalTagType.OBSERVATION_SPAN,
                value=EvalSpanKind.LLM,
                eval_name=EvalName.IS_JSON,
                mapping={"text": "output.value"},  # the mapping Future AGI's own SDK requires
                custom_eval_name="valid-json",
                model=ModelChoices.TURING_FLASH,
            ),
            EvalTag(
                type=EvalTagType.OBSERVATION_SPAN,
                value=EvalSpanKind.LLM,
                eval_name=EvalName.LEVENSHTEIN_SIMILARITY,
                mapping={"response": "output.value", "expected_text": "expected.text"},
                model=ModelChoices.TURING_FLASH,
            ),
        ]

    eval_tags = await asyncio.to_thread(tags)
    provider = await traceai_register(
        monkeypatch, ingest.url, project.keys.public_key, project.keys.secret_key, eval_tags=eval_tags
    )
    await asyncio.to_thread(emit, provider, '{"answer": 42}', '{"answer": 42}')
    await asyncio.to_thread(emit, provider, "not json", "not json at all")
    await asyncio.to_thread(provider.shutdown)

    got = await scores.settled(4)
    assert sorted((s.name, s.evaluator_name, round(s.value, 3)) for s in got) == [
        ("levenshtein_similarity", "levenshtein", 0.533),
        ("levenshtein_similarity", "levenshtein", 1.0),
        ("valid-json", "is_json", 0.0),
        ("valid-json", "is_json", 1.0),
    ]
    await scores.close()


async def test_an_eval_vane_cannot_run_is_refused_at_register_naming_what_vane_runs(
    make_project: Any, start_service: Callable[..., ServiceProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fi_instrumentation.fi_types import EvalName, EvalSpanKind, EvalTag, EvalTagType, ModelChoices

    ingest = start_service("ingest")
    project = await make_project()
    point_at(monkeypatch, ingest.url, project.keys.public_key, project.keys.secret_key)
    with pytest.raises(ValueError) as refused:
        await asyncio.to_thread(
            EvalTag,
            type=EvalTagType.OBSERVATION_SPAN,
            value=EvalSpanKind.LLM,
            eval_name=EvalName.TONE,
            mapping={"input": "input.value"},
            model=ModelChoices.TURING_FLASH,
        )
    message = str(refused.value)
    assert "Vane cannot run 'tone'" in message
    assert "is_json" in message and "levenshtein_similarity" in message and "llm_judge" in message
