"""Future AGI's traceAI `register()` exactly as its users call it, pointed at a Vane ingest."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest


def point_at(monkeypatch: pytest.MonkeyPatch, ingest_url: str, public_key: str, secret_key: str) -> None:
    """traceAI's settings for Vane: its base URL and key pair (EvalTag(...) asks the server already)."""
    monkeypatch.setenv("FI_BASE_URL", ingest_url)
    monkeypatch.setenv("FI_API_KEY", public_key)
    monkeypatch.setenv("FI_SECRET_KEY", secret_key)


async def traceai_register(
    monkeypatch: pytest.MonkeyPatch,
    ingest_url: str,
    public_key: str,
    secret_key: str,
    eval_tags: list[Any] | None = None,
) -> Any:
    """register(..., eval_tags=[is_json on LLM spans' output.value], or those given) with FI_BASE_URL at ingest.

    traceAI installs its own SIGINT/SIGTERM handlers; they are put back so pytest keeps its own.
    """
    from fi_instrumentation import register
    from fi_instrumentation.fi_types import EvalSpanKind, EvalTag, EvalTagType, ModelChoices, ProjectType

    point_at(monkeypatch, ingest_url, public_key, secret_key)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if eval_tags is None:
            eval_tags = [
                EvalTag(
                    type=EvalTagType.OBSERVATION_SPAN,
                    value=EvalSpanKind.LLM,
                    eval_name="is_json",
                    mapping={"output": "output.value"},
                    model=ModelChoices.TURING_FLASH,
                )
            ]
        return await asyncio.to_thread(
            register,
            project_type=ProjectType.EXPERIMENT,
            project_name="my-chatbot",
            project_version_name="gpt-4o-concise-prompt",
            eval_tags=eval_tags,
            batch=False,
            verbose=False,
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
