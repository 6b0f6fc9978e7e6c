"""What a convention is: tables from a client's attribute names to canonical fields, with converters.

A converter takes the attribute's value as the client sent it (str, int, float, bool, list, dict)
and returns the canonical value, or None when it does not understand it (a lower-precedence
convention may then fill the field). An expander returns several fields at once (a JSON usage
object). Indexed messages (`gen_ai.prompt.0.content`) are rebuilt into a JSON list of messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Converter = Callable[[Any], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Expander = Callable[[Any], Mapping[str, Any] | None]

# The canonical fields a span table may fill (see normalise.CanonicalFields for their use).
SPAN_FIELDS = frozenset(
    {
        "kind",
        "model",
        "prompt_name",
        "prompt_version",
        "prompt_label",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cached_input_tokens",
        "cost",
        "input_cost",
        "output_cost",
        "ttft_ms",
        "completion_start_ns",
        "session_id",
        "user_id",
        "input",
        "output",
        "error_message",
        "is_error",
        "app_version",
    }
)
RESOURCE_FIELDS = frozenset({"project_name", "app_version", "project_type", "eval_tags_json", "metadata_json"})


@dataclass(frozen=True)
class Indexed:
    """Messages spread over numbered attributes: `pattern` captures (index, role|content) and they
    become `field` as a JSON list of {role, content}."""

    prefix: str
    pattern: re.Pattern[str]
    field: str


@dataclass(frozen=True)
class Convention:
    name: str
    span: Mapping[str, tuple[str, Converter]] = field(default_factory=dict)
    resource: Mapping[str, tuple[str, Converter]] = field(default_factory=dict)
    expand: Mapping[str, Expander] = field(default_factory=dict)
    indexed: tuple[Indexed, ...] = ()
    # Span events whose time marks the first streamed token (time to first token = it - span start).
    first_token_events: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = {f for f, _ in self.span.values()} - SPAN_FIELDS
        unknown |= {f for f, _ in self.resource.values()} - RESOURCE_FIELDS
        if unknown:
            raise ValueError(f"convention {self.name} maps to unknown canonical fields {sorted(unknown)}")


def text(value: Any) -> str | None:
    """A string as sent; structured values become compact JSON; empty means absent."""
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def count(value: Any) -> int | None:
    """A token count: a non-negative integer, or an integer in a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value >= 0 and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        try:
            return int(value)
        except ValueError:  # digits int() does not read, such as superscripts
            return None
    return None


def amount(value: Any) -> float | None:
    """A non-negative number (USD, milliseconds), or one in a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number >= 0 else None
    return None


def version(value: Any) -> int | None:
    """A prompt version number: 3, "3" or "v3"."""
    if isinstance(value, str):
        value = value.strip().lstrip("vV")
    number = count(value)
    return number if number else None


def seconds_to_ms(value: Any) -> float | None:
    number = amount(value)
    return None if number is None else number * 1000.0


def timestamp_ns(value: Any) -> int | None:
    """An instant: ISO 8601 (JSON-quoted or not) or epoch nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value:
        return None
    raw = value.strip().strip('"')
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as the other converters are
class Lowered:
    """A kind converter: the client's value, case-insensitively, looked up in `table` (lower-case
    keys). A class, not a closure, so that ingest's C path can read the table (canonical.py)."""

    table: Mapping[str, str]

    def __call__(self, value: Any) -> str | None:
        return self.table.get(value.lower()) if isinstance(value, str) else None


def lowered(mapping: Mapping[str, str]) -> Lowered:
    return Lowered({k.lower(): v for k, v in mapping.items()})


def json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as the other converters are
class Member:
    """A converter reading one member of a JSON object (`{"model": "gpt-4o", "stream": true}` → "gpt-4o")."""

    key: str

    def __call__(self, value: Any) -> str | None:
        found = json_object(value)
        return text(found.get(self.key)) if found is not None else None


def is_error_level(value: Any) -> bool | None:
    return True if isinstance(value, str) and value.upper() == "ERROR" else None


# The canonical span kinds (CanonicalSpan.kind) and the upper-case names OpenInference and traceAI use.
KINDS = ("llm", "chain", "tool", "retriever", "embedding", "agent", "reranker", "guardrail", "evaluator", "span")
UPPER_KINDS = {kind.upper(): kind for kind in KINDS} | {"UNKNOWN": "span", "CONVERSATION": "chain"}
