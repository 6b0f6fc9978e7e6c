"""The services' own OpenTelemetry tracing: off by default, console or OTLP when asked."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from services.common.settings import Settings


def configure_tracing(service: str, settings: Settings) -> TracerProvider | None:
    exporter: SpanExporter
    if settings.otel_exporter == "none":
        return None
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint)
    else:
        raise SystemExit(f"VANE_OTEL_EXPORTER must be none, console or otlp, got {settings.otel_exporter!r}")
    provider = TracerProvider(resource=Resource.create({"service.name": f"vane-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
