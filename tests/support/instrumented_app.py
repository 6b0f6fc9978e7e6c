"""An app as a new user writes it: the real `openai` client, instrumented by one package, pointed
at Vane with nothing changed but the URL and the key. Each run is its own process, as an app is:
instrumentors patch `openai` for the whole process, and Langfuse's wrapper does on import.

    python -m tests.support.instrumented_app '{"package": ..., "ingest": URL, "origin": URL,
        "public_key": ..., "secret_key": ..., "openai": BASE_URL, "calls": N, "app_version": V,
        "prompt": NAME}'

makes N chat completions and N streamed ones, then flushes its spans.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

MESSAGES = [{"role": "user", "content": "Where is my order?"}]


def _provider(run: dict[str, Any]) -> Any:
    """Plain OpenTelemetry, exporting to Vane's OTLP endpoint: the service is the app, its version the app's."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "my-chatbot", "service.version": run["app_version"]})
    provider = TracerProvider(resource=resource)
    headers = {"Authorization": f"Bearer {run['secret_key']}"}
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{run['ingest']}/v1/traces", headers=headers)))
    return provider


def _openinference(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider = _provider(run)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return _openai_client(run), provider.shutdown


def _openllmetry(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    provider = _provider(run)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return _openai_client(run), provider.shutdown


def _openai_v2(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    provider = _provider(run)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return _openai_client(run), provider.shutdown


def _openai_v2_events(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    """The official instrumentation sending message content as log events only (EVENT_ONLY)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "EVENT_ONLY"
    provider = _provider(run)
    logs = LoggerProvider(resource=provider.resource)
    headers = {"Authorization": f"Bearer {run['secret_key']}"}
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(f"{run['ingest']}/v1/logs", headers=headers)))
    OpenAIInstrumentor().instrument(tracer_provider=provider, logger_provider=logs)

    def shutdown() -> None:  # as at exit: the providers made last stop first
        logs.shutdown()
        provider.shutdown()

    return _openai_client(run), shutdown


def _traceai(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    """Future AGI's way: register() with FI_BASE_URL at Vane, then its instrumentor."""
    from fi_instrumentation import register
    from fi_instrumentation.fi_types import ProjectType
    from traceai_openai import OpenAIInstrumentor

    os.environ.update(FI_BASE_URL=run["ingest"], FI_API_KEY=run["public_key"], FI_SECRET_KEY=run["secret_key"])
    provider = register(
        project_type=ProjectType.EXPERIMENT,
        project_name="my-chatbot",
        project_version_name=run["app_version"],
        batch=True,
        verbose=False,
    )
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return _openai_client(run), provider.shutdown


def _langfuse(run: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    """Langfuse's drop-in `from langfuse.openai import OpenAI`, configured by its environment."""
    os.environ.update(
        LANGFUSE_PUBLIC_KEY=run["public_key"],
        LANGFUSE_SECRET_KEY=run["secret_key"],
        LANGFUSE_BASE_URL=run["origin"],
        LANGFUSE_RELEASE=run["app_version"],
    )
    from langfuse import get_client
    from langfuse.openai import OpenAI

    langfuse = get_client()
    prompt = langfuse.get_prompt(run["prompt"])
    client = OpenAI(base_url=run["openai"], api_key="sk-test")
    create = client.chat.completions.create

    def linked(**kwargs: Any) -> Any:  # the wrapper links a generation to the prompt it was given
        return create(langfuse_prompt=prompt, **kwargs)

    client.chat.completions.create = linked  # type: ignore[method-assign]
    return client, langfuse.flush


PACKAGES: dict[str, Callable[[dict[str, Any]], tuple[Any, Callable[[], None]]]] = {
    "openinference": _openinference,
    "openllmetry": _openllmetry,
    "openai-v2": _openai_v2,
    "openai-v2-events": _openai_v2_events,
    "traceai": _traceai,
    "langfuse": _langfuse,
}


def _openai_client(run: dict[str, Any]) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=run["openai"], api_key="sk-test")


def main() -> None:
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "SOURCE_VERSION"):  # Langfuse's release guesses
        os.environ.pop(name, None)
    run = json.loads(sys.argv[1])
    client, flush = PACKAGES[run["package"]](run)
    for _ in range(run["calls"]):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    for _ in range(run["calls"]):
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        for _chunk in stream:
            pass
    flush()


if __name__ == "__main__":
    main()
