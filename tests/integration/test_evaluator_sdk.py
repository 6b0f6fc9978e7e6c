"""Eval tags given at register() — Vane's SDK and Future AGI's traceAI, unchanged — score exactly the
spans they target, through a real ingest and a real evaluator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import vane

from services.common.bus import Bus
from tests.integration.test_evaluator import ScoreReader
from tests.support.processes import ServiceProcess
from tests.support.traceai import traceai_register


def emit(provider: Any, kind: str, output: str) -> None:
    attributes = {"gen_ai.span.kind": kind, "gen_ai.request.model": "gpt-4o-mini", "output.value": output}
    provider.get_tracer("test").start_span(f"{kind.lower()}-step", attributes=attributes).end()


async def test_eval_tags_from_vane_and_traceai_register_score_only_their_target_spans(
    run_bus: Bus,
    make_project: Any,
    start_service: Callable[..., ServiceProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    ingest = start_service("ingest")
    start_service("evaluator")
    ours, theirs = await make_project(), await make_project()
    our_scores, their_scores = await ScoreReader(run_bus, ours).open(), await ScoreReader(run_bus, theirs).open()

    provider = vane.register(
        project_type=vane.ProjectType.EXPERIMENT,
        project_name="support-bot",
        project_version_name="v2",
        eval_tags=[
            vane.EvalTag(
                eval_name="contains",
                value="LLM",
                custom_eval_name="mentions_refund",
                mapping={"output": "output.value"},
                config={"values": ["refund"]},
            )
        ],
        secret_key=ours.keys.secret_key,
        endpoint=ingest.url,
        set_global_tracer_provider=False,
        batch=False,
    )
    emit(provider, "LLM", "Your refund is on its way.")
    emit(provider, "CHAIN", "Your refund is on its way.")
    emit(provider, "LLM", "Thanks for waiting.")
    provider.shutdown()

    fi_provider = await traceai_register(monkeypatch, ingest.url, theirs.keys.public_key, theirs.keys.secret_key)
    await asyncio.to_thread(emit, fi_provider, "LLM", '{"answer": 42}')
    await asyncio.to_thread(emit, fi_provider, "TOOL", '{"answer": 42}')
    await asyncio.to_thread(emit, fi_provider, "LLM", "not json")
    await asyncio.to_thread(fi_provider.shutdown)

    mine = await our_scores.settled(2)
    assert sorted((s.name, s.evaluator_name, s.value) for s in mine) == [
        ("mentions_refund", "contains", 0.0),
        ("mentions_refund", "contains", 1.0),
    ]
    theirs_scored = await their_scores.settled(2)
    assert sorted((s.name, s.value) for s in theirs_scored) == [("is_json", 0.0), ("is_json", 1.0)]
    await our_scores.close()
    await their_scores.close()
