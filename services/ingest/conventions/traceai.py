"""Future AGI's traceAI: resource project_name / project_version_name / project_type / eval_tags,
span `gen_ai.span.kind`, `gen_ai.prompt.template.*`, `gen_ai.cost.*` and its `gen_ai.usage.*` details."""

from __future__ import annotations

from services.ingest.conventions.convention import (
    UPPER_KINDS,
    Convention,
    Member,
    amount,
    count,
    lowered,
    text,
    version,
)

TRACEAI = Convention(
    name="traceai",
    resource={
        "project_name": ("project_name", text),
        "project_version_name": ("app_version", text),
        "project_type": ("project_type", lowered({"experiment": "experiment", "observe": "observe"})),
        "eval_tags": ("eval_tags_json", text),
        "metadata": ("metadata_json", text),
    },
    span={
        "gen_ai.span.kind": ("kind", lowered(UPPER_KINDS)),
        "gen_ai.prompt.template.name": ("prompt_name", text),
        "gen_ai.prompt.name": ("prompt_name", text),
        "gen_ai.prompt.template.version": ("prompt_version", version),
        "gen_ai.prompt.template.label": ("prompt_label", text),
        "gen_ai.cost.total": ("cost", amount),
        "gen_ai.cost.input": ("input_cost", amount),
        "gen_ai.cost.output": ("output_cost", amount),
        "gen_ai.usage.total_tokens": ("total_tokens", count),
        "gen_ai.usage.cache_read_tokens": ("cached_input_tokens", count),
        "gen_ai.usage.input_tokens.cache_read": ("cached_input_tokens", count),
        "gen_ai.server.time_to_first_token": ("ttft_ms", amount),  # traceAI documents milliseconds
        "input.value": ("input", text),
        "output.value": ("output", text),
        "session.id": ("session_id", text),
        "user.id": ("user_id", text),
        "error.message": ("error_message", text),
    },
    first_token_events=("First Token Stream Event",),
)

# traceAI's streaming spans name the model only among the request's parameters
# (`{"model": "gpt-4o", "stream": true}`): the last resort, after every convention's own model.
TRACEAI_PARAMETERS = Convention(
    name="traceai-parameters",
    span={"gen_ai.request.parameters": ("model", Member("model"))},
)
