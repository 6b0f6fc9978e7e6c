"""`vane.register(...)`: an OpenTelemetry TracerProvider that exports to Vane's ingest.

The resource carries what Future AGI's traceAI puts there (project_name, project_type,
project_version_name, eval_tags as JSON, metadata as JSON), so Vane reads spans from either SDK
the same way.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from vane.config import ClientConfig


class ProjectType(Enum):
    EXPERIMENT = "experiment"
    OBSERVE = "observe"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@dataclass
class EvalTag:
    """Which evaluator scores which spans, and where its inputs are in a span: serialised into the
    resource attribute `eval_tags` with the same keys as traceAI's EvalTag."""

    eval_name: str
    value: str = "LLM"  # the span kind it applies to (LLM, CHAIN, TOOL, …)
    mapping: dict[str, str] = field(default_factory=dict)  # evaluator input → span attribute path
    config: dict[str, Any] = field(default_factory=dict)
    custom_eval_name: str = ""
    model: str = ""
    type: str = "OBSERVATION_SPAN_TYPE"

    def to_dict(self) -> dict[str, Any]:
        name = _plain(self.eval_name)
        return {
            "type": _plain(self.type),
            "value": _plain(self.value),
            "eval_name": name,
            "config": dict(self.config),
            "mapping": dict(self.mapping),
            "custom_eval_name": self.custom_eval_name or name,
            "model": _plain(self.model) or "",
        }


_lock = threading.Lock()
_provider: TracerProvider | None = None


def register(
    project_type: ProjectType | str = ProjectType.EXPERIMENT,
    project_name: str = "default",
    project_version_name: str = "",
    eval_tags: Sequence[EvalTag | Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    secret_key: str | None = None,
    endpoint: str | None = None,
    batch: bool = True,
    set_global_tracer_provider: bool = True,
) -> TracerProvider:
    """A TracerProvider whose spans are batched to VANE_OTLP_ENDPOINT (+ /v1/traces) with the key;
    it becomes vane's provider (and OpenTelemetry's global one unless told otherwise), and is
    flushed at exit."""
    global _provider
    kind = ProjectType(_plain(project_type))
    tags = [t.to_dict() if isinstance(t, EvalTag) else dict(t) for t in eval_tags or ()]
    if kind is ProjectType.OBSERVE and tags:
        raise ValueError("eval_tags are for EXPERIMENT projects; an OBSERVE project is scored by rules")
    names = [t.get("custom_eval_name") or t.get("eval_name") for t in tags]
    if len(names) != len(set(names)):
        raise ValueError(f"two eval tags share a name: {names}")
    config = ClientConfig.resolve(secret_key=secret_key, otlp_endpoint=endpoint)
    resource = Resource.create(
        {
            "service.name": project_name,
            "project_name": project_name,
            "project_type": kind.value,
            "project_version_name": project_version_name,
            "eval_tags": json.dumps(tags),
            "metadata": json.dumps(dict(metadata or {}), default=str),
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(
        endpoint=f"{config.otlp_endpoint}/v1/traces", headers={"Authorization": f"Bearer {config.secret_key}"}
    )
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    with _lock:
        _provider = provider
    if set_global_tracer_provider:
        trace.set_tracer_provider(provider)  # OpenTelemetry warns and keeps the first if one is set
    atexit.register(provider.force_flush)
    return provider


def current_provider() -> TracerProvider | None:
    """The provider of the last `register` call, if any."""
    return _provider


def get_tracer() -> trace.Tracer:
    """Vane's tracer: from the registered provider, else OpenTelemetry's global one."""
    provider = _provider
    return trace.get_tracer("vane", tracer_provider=provider) if provider else trace.get_tracer("vane")


def flush(timeout_millis: int = 30_000) -> bool:
    """Export every finished span now; True when all were sent in time."""
    provider = _provider
    if provider is None:
        global_provider = trace.get_tracer_provider()
        flush_global = getattr(global_provider, "force_flush", None)
        return bool(flush_global(timeout_millis)) if flush_global else True
    return provider.force_flush(timeout_millis)
