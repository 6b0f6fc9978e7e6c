"""OpenInference (Arize Phoenix): `openinference.span.kind`, `llm.*`, `input.value`/`output.value`."""

from __future__ import annotations

import re

from services.ingest.conventions.convention import (
    UPPER_KINDS,
    Convention,
    Indexed,
    Member,
    amount,
    count,
    lowered,
    text,
    version,
)

OPENINFERENCE = Convention(
    name="openinference",
    span={
        "openinference.span.kind": ("kind", lowered(UPPER_KINDS)),
        "llm.model_name": ("model", text),
        "embedding.model_name": ("model", text),
        "llm.token_count.prompt": ("input_tokens", count),
        "llm.token_count.completion": ("output_tokens", count),
        "llm.token_count.total": ("total_tokens", count),
        "llm.token_count.prompt_details.cache_read": ("cached_input_tokens", count),
        "llm.cost.total": ("cost", amount),
        "llm.cost.prompt": ("input_cost", amount),
        "llm.cost.completion": ("output_cost", amount),
        "llm.prompt_template.version": ("prompt_version", version),
        "input.value": ("input", text),
        "output.value": ("output", text),
        "session.id": ("session_id", text),
        "user.id": ("user_id", text),
        "exception.message": ("error_message", text),
    },
    indexed=(
        Indexed("llm.input_messages.", re.compile(r"^llm\.input_messages\.(\d+)\.message\.(role|content)$"), "input"),
        Indexed(
            "llm.output_messages.", re.compile(r"^llm\.output_messages\.(\d+)\.message\.(role|content)$"), "output"
        ),
    ),
    first_token_events=("First Token Stream Event",),
)

# The request's parameters as JSON (`{"model": "gpt-4o", ...}`): a model only when no attribute names one.
OPENINFERENCE_PARAMETERS = Convention(
    name="openinference-parameters",
    span={"llm.invocation_parameters": ("model", Member("model"))},
)
