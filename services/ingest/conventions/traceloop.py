"""OpenLLMetry (Traceloop): `traceloop.*`, `llm.*` usage and the numbered `gen_ai.prompt.N.*` messages."""

from __future__ import annotations

from services.ingest.conventions.convention import Convention, count, lowered, text, version

SPAN_KINDS = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
REQUEST_KINDS = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "reranker"}

TRACELOOP = Convention(
    name="traceloop",
    span={
        "llm.request.type": ("kind", lowered(REQUEST_KINDS)),
        "traceloop.span.kind": ("kind", lowered(SPAN_KINDS)),
        "gen_ai.usage.prompt_tokens": ("input_tokens", count),
        "gen_ai.usage.completion_tokens": ("output_tokens", count),
        "llm.usage.total_tokens": ("total_tokens", count),
        "gen_ai.usage.cache_read_input_tokens": ("cached_input_tokens", count),
        "traceloop.entity.input": ("input", text),
        "traceloop.entity.output": ("output", text),
        "traceloop.association.properties.session_id": ("session_id", text),
        "traceloop.association.properties.user_id": ("user_id", text),
        "traceloop.prompt.key": ("prompt_name", text),
        "traceloop.prompt.version": ("prompt_version", version),
    },
)
