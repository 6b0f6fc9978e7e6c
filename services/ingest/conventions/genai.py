"""OpenTelemetry's GenAI semantic conventions (`gen_ai.*`), the common ground of every client."""

from __future__ import annotations

import re

from services.ingest.conventions.convention import Convention, Indexed, count, lowered, text

OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "completion": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}

GENAI = Convention(
    name="genai",
    # Plain OpenTelemetry resources: the service is the project, its version the app version.
    resource={"service.name": ("project_name", text), "service.version": ("app_version", text)},
    span={
        "gen_ai.operation.name": ("kind", lowered(OPERATION_KINDS)),
        "gen_ai.response.model": ("model", text),
        "gen_ai.request.model": ("model", text),
        "gen_ai.usage.input_tokens": ("input_tokens", count),
        "gen_ai.usage.output_tokens": ("output_tokens", count),
        "gen_ai.usage.cache_read.input_tokens": ("cached_input_tokens", count),
        "gen_ai.conversation.id": ("session_id", text),
        "enduser.id": ("user_id", text),
        "gen_ai.input.messages": ("input", text),
        "gen_ai.output.messages": ("output", text),
        # The earlier event-style attributes, still sent by some instrumentations.
        "gen_ai.prompt": ("input", text),
        "gen_ai.completion": ("output", text),
        "error.message": ("error_message", text),
        "error.type": ("error_message", text),
    },
    indexed=(
        Indexed("gen_ai.prompt.", re.compile(r"^gen_ai\.prompt\.(\d+)\.(role|content)$"), "input"),
        Indexed("gen_ai.completion.", re.compile(r"^gen_ai\.completion\.(\d+)\.(role|content)$"), "output"),
    ),
)
