"""Span paths → evaluator inputs.

A mapping binds an evaluator's input (`output`, `reference`, ...) to a path in the span: `input` and
`output` are the canonical fields; anything else addresses the span's attributes, where a path may
run through flat dotted keys (`output.value`), JSON-encoded values (`gen_ai.output.messages` holds a
JSON list) and list indexes (`gen_ai.output.messages.0.content`), in any combination.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.evaluator.spans import SpanView

DEFAULT_MAPPING = {"input": "input", "output": "output"}
# Attributes whose text ingest carries once, as the canonical input or output, and leaves out of
# attributes_json: a path through one of them that the attributes lack is read from that field.
CARRIED = {
    "input.value": "input",
    "output.value": "output",
    "gen_ai.input.messages": "input",
    "gen_ai.output.messages": "output",
    "gen_ai.prompt": "input",
    "gen_ai.completion": "output",
    "langfuse.observation.input": "input",
    "langfuse.observation.output": "output",
    "abv.observation.input": "input",
    "abv.observation.output": "output",
    "traceloop.entity.input": "input",
    "traceloop.entity.output": "output",
}
_ABSENT = object()


def resolve(span: SpanView, path: str) -> str | None:
    """The text at `path` in the span, or None when nothing is there."""
    path = path.strip()
    if path.startswith("span."):
        path = path[len("span.") :]
    if path in ("input", "output"):
        text = getattr(span, path)
        return text if text else _text(_walk(span.attributes, [f"{path}.value"]))
    if path.startswith("attributes."):
        path = path[len("attributes.") :]
    segments = path.split(".")
    found = _walk(span.attributes, segments)
    if found is _ABSENT:
        found = _carried(span, segments)
    return _text(found)


def _carried(span: SpanView, segments: list[str]) -> Any:
    for cut in range(len(segments), 0, -1):
        key = ".".join(segments[:cut])
        if key in CARRIED and key not in span.attributes:
            return _walk(getattr(span, CARRIED[key]) or _ABSENT, segments[cut:])
    return _ABSENT


def resolve_inputs(
    span: SpanView, mapping: Mapping[str, str], constants: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Bind every input: a mapped path first, then a constant from config, then the default path.

    Returns (inputs found, {input: path} of the mapped inputs that were not found).
    """
    inputs: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name, path in mapping.items():
        value = resolve(span, str(path))
        if value is not None:
            inputs[name] = value
        elif name not in constants:
            missing[name] = str(path)
    for name, value in constants.items():
        inputs.setdefault(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    for name, path in DEFAULT_MAPPING.items():
        if name not in inputs and name not in missing and (value := resolve(span, path)) is not None:
            inputs[name] = value
    return inputs, missing


def _walk(node: Any, segments: list[str]) -> Any:
    if not segments:
        return node
    if isinstance(node, str) and node[:1] in ("{", "["):
        try:
            node = json.loads(node)
        except ValueError:
            return _ABSENT
    if isinstance(node, Mapping):
        # Longest key first: flat attribute keys contain dots themselves.
        for cut in range(len(segments), 0, -1):
            key = ".".join(segments[:cut])
            if key in node:
                found = _walk(node[key], segments[cut:])
                if found is not _ABSENT:
                    return found
        if segments == ["content"] and isinstance(node.get("parts"), list):
            return _parts_text(node["parts"])  # GenAI messages keep their text in parts
        return _ABSENT
    if isinstance(node, list):
        try:
            index = int(segments[0])
            return _walk(node[index], segments[1:])
        except (ValueError, IndexError):
            return _ABSENT
    return _ABSENT


def _parts_text(parts: list[Any]) -> Any:
    texts = [str(p["content"]) for p in parts if isinstance(p, Mapping) and isinstance(p.get("content"), str)]
    return "".join(texts) if texts else _ABSENT


def _text(value: Any) -> str | None:
    if value is _ABSENT or value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
