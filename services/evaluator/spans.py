"""What the evaluator reads of a canonical span: plain data, decoded once from the bus message."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from vane.v1 import bus_pb2


@dataclass(frozen=True)
class SpanView:
    project_id: str
    trace_id: bytes
    span_id: bytes
    kind: str = ""
    app_version: str = ""
    prompt_name: str = ""
    prompt_version: int = 0
    prompt_label: str = ""
    model: str = ""
    input: str = ""
    output: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    eval_tags: list[Any] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Identifies the span within its project (trace id and span id, hex)."""
        return f"{self.trace_id.hex()}:{self.span_id.hex()}"

    @property
    def project_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.project_id)


def _json_or(raw: str, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def from_proto(span: bus_pb2.CanonicalSpan, project_id: str = "") -> SpanView:
    """A SpanView of a canonical span; undecodable JSON fields read as empty, never fail the span."""
    attributes = _json_or(span.attributes_json, {})
    tags = _json_or(span.eval_tags_json, [])
    if isinstance(tags, str):  # a resource attribute double-encoded on the way
        tags = _json_or(tags, [])
    return SpanView(
        project_id=span.project_id or project_id,
        trace_id=bytes(span.trace_id),
        span_id=bytes(span.span_id),
        kind=span.kind.lower(),
        app_version=span.app_version,
        prompt_name=span.prompt_name,
        prompt_version=span.prompt_version,
        prompt_label=span.prompt_label,
        model=span.model,
        input=span.input,
        output=span.output,
        attributes=attributes if isinstance(attributes, dict) else {},
        eval_tags=tags if isinstance(tags, list) else [],
    )
