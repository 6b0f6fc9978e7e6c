"""The tracing half of the client: generations, scores and flushing (issue 4)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

from vane.config import ClientConfig
from vane.http_json import ApiError, call
from vane.tracing_generation import Generation, generation_span
from vane.tracing_register import current_provider, flush, register


class ScoreError(RuntimeError):
    """Vane refused a score, or could not be reached; the message says which."""


class TracingMixin:
    config: ClientConfig

    def _init_tracing(self) -> None:
        self._tracer: trace.Tracer | None = None

    def _close_tracing(self) -> None:
        self.flush()

    def _get_tracer(self) -> trace.Tracer:
        if self._tracer is None:
            provider = current_provider() or register(
                secret_key=self.config.secret_key, endpoint=self.config.otlp_endpoint
            )
            self._tracer = provider.get_tracer("vane")
        return self._tracer

    @contextmanager
    def start_generation(
        self,
        name: str,
        model: str | None = None,
        prompt: Any = None,
        input: Any = None,
        model_parameters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> Iterator[Generation]:
        """A span for one LLM call; a prompt served by Vane links the call to its version (a fallback
        prompt does not). Call `.update(output=, usage=, cost=)` and `.first_token()` inside."""
        with generation_span(
            self._get_tracer(),
            name,
            model=model,
            prompt=prompt,
            input=input,
            model_parameters=model_parameters,
            metadata=metadata,
            session_id=session_id,
            user_id=user_id,
        ) as generation:
            yield generation

    def score(
        self,
        trace_id: str | int,
        name: str,
        value: float | bool | str,
        span_id: str | int | None = None,
        data_type: str | None = None,
        source: str = "api",
        comment: str | None = None,
        score_id: str | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Send one score to Vane; returns its id (a retry with the same id is stored once)."""
        body: dict[str, Any] = {
            "id": score_id or str(uuid.uuid4()),
            "trace_id": format(trace_id, "032x") if isinstance(trace_id, int) else trace_id,
            "name": name,
            "value": value,
            "source": source,
        }
        if span_id is not None:
            body["span_id"] = format(span_id, "016x") if isinstance(span_id, int) else span_id
        if data_type:
            body["data_type"] = data_type
        if comment:
            body["comment"] = comment
        try:
            call("POST", self.config.api_url, "/api/v1/scores", self.config.secret_key, body, timeout=timeout)
        except ApiError as exc:
            raise ScoreError(str(exc)) from None
        return str(body["id"])

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now."""
        return flush(timeout_millis)
