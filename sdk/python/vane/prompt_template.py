"""Prompt bodies: the `{{name}}` variables they hold, and filling them in.

A text prompt is a string; a chat prompt is a list of `{role, content}` messages and
`{type: "placeholder", name}` slots that compile fills with lists of messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

Message = dict[str, Any]
PromptBody = str | list[Message]


def is_placeholder(message: Mapping[str, Any]) -> bool:
    return message.get("type") == "placeholder"


def variables_of(body: PromptBody) -> list[str]:
    """The distinct variable names of a text or chat body, in order of first appearance."""
    texts = [body] if isinstance(body, str) else [str(m.get("content", "")) for m in body if not is_placeholder(m)]
    seen: dict[str, None] = {}
    for text in texts:
        for match in VARIABLE.finditer(text):
            seen.setdefault(match.group(1), None)
    return list(seen)


def fill(text: str, values: Mapping[str, Any]) -> str:
    """Replace each `{{name}}` that has a value; leave the others as they are."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return VARIABLE.sub(replace, text)


def compile_body(body: PromptBody, values: Mapping[str, Any]) -> PromptBody:
    """A text body becomes a string; a chat body a list of messages, each placeholder replaced by
    the list of messages given under its name (an unfilled placeholder stays as it is)."""
    if isinstance(body, str):
        return fill(body, values)
    out: list[Message] = []
    for message in body:
        if is_placeholder(message):
            filler = values.get(str(message.get("name", "")))
            if isinstance(filler, list):
                out.extend(dict(m) for m in filler)
            else:
                out.append(dict(message))
            continue
        compiled = dict(message)
        compiled["content"] = fill(str(message.get("content", "")), values)
        out.append(compiled)
    return out
