"""Langfuse's SDK (v3, OpenTelemetry based) and ABV, its fork: `langfuse.observation.*` / `abv.observation.*`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ingest.conventions.convention import (
    Convention,
    Converter,
    Expander,
    amount,
    count,
    is_error_level,
    json_object,
    lowered,
    text,
    timestamp_ns,
    version,
)

OBSERVATION_KINDS = {
    "generation": "llm",
    "span": "span",
    "event": "span",
    "agent": "agent",
    "tool": "tool",
    "chain": "chain",
    "retriever": "retriever",
    "embedding": "embedding",
    "evaluator": "evaluator",
    "guardrail": "guardrail",
}
_USAGE_KEYS = {
    "input": "input_tokens",
    "input_tokens": "input_tokens",
    "prompt_tokens": "input_tokens",
    "output": "output_tokens",
    "output_tokens": "output_tokens",
    "completion_tokens": "output_tokens",
    "total": "total_tokens",
    "total_tokens": "total_tokens",
    "input_cached_tokens": "cached_input_tokens",
    "input_cache_read": "cached_input_tokens",
    "cache_read_input_tokens": "cached_input_tokens",
    "cached_tokens": "cached_input_tokens",
}
_COST_KEYS = {"total": "cost", "input": "input_cost", "output": "output_cost"}


def usage_details(value: Any) -> Mapping[str, Any] | None:
    """{"input": 812, "output": 96, "input_cached_tokens": 512} → token fields."""
    details = json_object(value)
    if details is None:
        return None
    out = {_USAGE_KEYS[k]: n for k, v in details.items() if k in _USAGE_KEYS and (n := count(v)) is not None}
    return out or None


def cost_details(value: Any) -> Mapping[str, Any] | None:
    """{"input": 0.002, "output": 0.001, "total": 0.003} → cost fields (USD)."""
    details = json_object(value)
    if details is None:
        return None
    out = {_COST_KEYS[k]: n for k, v in details.items() if k in _COST_KEYS and (n := amount(v)) is not None}
    return out or None


def _convention(vendor: str) -> Convention:
    o = f"{vendor}.observation."
    span: dict[str, tuple[str, Converter]] = {
        o + "type": ("kind", lowered(OBSERVATION_KINDS)),
        o + "model.name": ("model", text),
        o + "prompt.name": ("prompt_name", text),
        o + "prompt.version": ("prompt_version", version),
        o + "input": ("input", text),
        o + "output": ("output", text),
        o + "completion_start_time": ("completion_start_ns", timestamp_ns),
        o + "level": ("is_error", is_error_level),
        o + "status_message": ("error_message", text),
        f"{vendor}.version": ("app_version", text),  # an observation's or its trace's version
        f"{vendor}.release": ("app_version", text),  # a trace's release (update_trace(release=...))
        f"{vendor}.session.id": ("session_id", text),
        f"{vendor}.user.id": ("user_id", text),
        "session.id": ("session_id", text),
        "user.id": ("user_id", text),
    }
    expand: dict[str, Expander] = {o + "usage_details": usage_details, o + "cost_details": cost_details}
    # The SDK puts LANGFUSE_RELEASE (or `Langfuse(release=...)`) on the resource.
    resource: dict[str, tuple[str, Converter]] = {f"{vendor}.release": ("app_version", text)}
    return Convention(name=vendor, span=span, resource=resource, expand=expand)


LANGFUSE = _convention("langfuse")
ABV = _convention("abv")
