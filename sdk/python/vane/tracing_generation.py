"""A generation: one LLM call as a span, with model, input, output, usage, cost, time to first
token and the prompt version that produced it. Attribute names are traceAI's and OpenTelemetry
GenAI's, so any Vane (or traceAI-aware) backend reads them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

_USAGE_KEYS = {
    "input_tokens": "gen_ai.usage.input_tokens",
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "input": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "output": "gen_ai.usage.output_tokens",
    "total_tokens": "gen_ai.usage.total_tokens",
    "total": "gen_ai.usage.total_tokens",
    "cached_input_tokens": "gen_ai.usage.cache_read_tokens",
    "cache_read_input_tokens": "gen_ai.usage.cache_read_tokens",
}
_KINDS = {"generation": "LLM", "span": "CHAIN", "chain": "CHAIN", "tool": "TOOL", "agent": "AGENT"}
_current: ContextVar[Generation | None] = ContextVar("vane_generation", default=None)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def prompt_attributes(prompt: Any) -> dict[str, Any]:
    """A served prompt's name, version and label; a fallback prompt (or none) links nothing."""
    if prompt is None or getattr(prompt, "is_fallback", False) or not getattr(prompt, "version", 0):
        return {}
    out: dict[str, Any] = {"gen_ai.prompt.template.name": prompt.name, "gen_ai.prompt.template.version": prompt.version}
    label = getattr(prompt, "label", None)
    if label:
        out["gen_ai.prompt.template.label"] = label
    return out


class Generation:
    """The live span of one LLM call; `update` adds what is known as it becomes known."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self._first_token_ns: int | None = None
        self._start_ns = time.time_ns()

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.span.get_span_context().span_id, "016x")

    def update(
        self,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        cost: float | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        input: Any = None,
    ) -> Generation:
        if output is not None:
            self.span.set_attribute("output.value", as_text(output))
        if input is not None:
            self.span.set_attribute("input.value", as_text(input))
        for key, count in (usage or {}).items():
            if key in _USAGE_KEYS and count is not None:
                self.span.set_attribute(_USAGE_KEYS[key], int(count))
        if cost is not None:
            self.span.set_attribute("gen_ai.cost.total", float(cost))
        if model:
            self.span.set_attribute("gen_ai.request.model", model)
        for key, value in (metadata or {}).items():
            self.span.set_attribute(f"metadata.{key}", as_text(value))
        return self

    def first_token(self) -> None:
        """Call when the first token of a streamed answer arrives: the span records the time to it."""
        if self._first_token_ns is None:
            self._first_token_ns = time.time_ns()
            ttft_ms = (self._first_token_ns - self._start_ns) / 1e6
            self.span.set_attribute("gen_ai.server.time_to_first_token", ttft_ms)


@contextmanager
def generation_span(
    tracer: trace.Tracer,
    name: str,
    *,
    as_type: str = "generation",
    model: str | None = None,
    prompt: Any = None,
    input: Any = None,
    model_parameters: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
) -> Iterator[Generation]:
    """A span for the block; an exception marks it as an error (and is re-raised)."""
    attributes: dict[str, Any] = {"gen_ai.span.kind": _KINDS.get(as_type, "CHAIN"), **prompt_attributes(prompt)}
    if as_type == "generation":
        attributes["gen_ai.operation.name"] = "chat"
    if model:
        attributes["gen_ai.request.model"] = model
    if input is not None:
        attributes["input.value"] = as_text(input)
    if model_parameters:
        attributes["gen_ai.request.parameters"] = as_text(dict(model_parameters))
    if session_id:
        attributes["session.id"] = session_id
    if user_id:
        attributes["user.id"] = user_id
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False) as span:
        generation = Generation(span).update(metadata=metadata)
        token = _current.set(generation)
        try:
            yield generation
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            _current.reset(token)


def current_generation() -> Generation | None:
    """The generation of the innermost `start_generation` or `@observe` block, if any."""
    return _current.get()


def update_current_generation(**fields: Any) -> None:
    """`current_generation().update(...)`, doing nothing outside a generation."""
    generation = _current.get()
    if generation is not None:
        generation.update(**fields)
