"""What the registry accepts, checked before anything is stored: pure functions that raise Invalid."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vane.prompt_template import PromptBody, is_placeholder, variables_of

from services.common.errors import Invalid

MAX_NAME = 255
MAX_LABEL = 36
LABEL = re.compile(r"^[a-z0-9_\-.]+$")
LATEST = "latest"
PRODUCTION = "production"
TYPES = ("text", "chat")


@dataclass(frozen=True)
class NewVersion:
    """A prompt version as a writer asked for it, validated."""

    name: str
    type: str
    prompt: PromptBody
    config: dict[str, Any]
    labels: tuple[str, ...]
    tags: tuple[str, ...]
    commit_message: str

    @property
    def variables(self) -> list[str]:
        return variables_of(self.prompt)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise Invalid("a prompt name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise Invalid(f"a prompt name is at most {MAX_NAME} characters, got {len(name)}")
    if "|" in name:
        raise Invalid(f"a prompt name must not contain '|': {name!r}")
    return name


def check_label(label: Any, settable: bool = True) -> str:
    """A well-formed label; with settable, also one a caller may move (not `latest`)."""
    if not isinstance(label, str) or not label:
        raise Invalid("a label must be a non-empty string")
    if len(label) > MAX_LABEL:
        raise Invalid(f"a label is at most {MAX_LABEL} characters, got {label!r}")
    if not LABEL.match(label):
        raise Invalid(f"a label must match {LABEL.pattern} (lower case, digits, _ - .): {label!r}")
    if settable and label == LATEST:
        raise Invalid("'latest' is maintained by the registry (it follows the newest version) and cannot be set")
    return label


def check_labels(labels: Any) -> tuple[str, ...]:
    if labels is None:
        return ()
    if not isinstance(labels, list | tuple) or not all(isinstance(x, str) for x in labels):
        raise Invalid("labels must be a list of strings")
    return tuple(dict.fromkeys(check_label(x) for x in labels))


def check_body(kind: Any, prompt: Any) -> tuple[str, PromptBody]:
    """The type and the body: a string for text, a list of messages and placeholders for chat.
    Without a type, the body's shape decides."""
    if kind in (None, ""):
        kind = "text" if isinstance(prompt, str) else "chat"
    if kind not in TYPES:
        raise Invalid(f"type must be 'text' or 'chat', got {kind!r}")
    if kind == "text":
        if not isinstance(prompt, str):
            raise Invalid("a text prompt must be a string")
        return kind, prompt
    if not isinstance(prompt, list) or not prompt:
        raise Invalid("a chat prompt must be a non-empty list of {role, content} messages")
    return kind, [_check_message(i, m) for i, m in enumerate(prompt)]


def _check_message(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise Invalid(f"chat message {index} must be an object")
    if is_placeholder(message):
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise Invalid(f"placeholder {index} needs a name")
        return {"type": "placeholder", "name": name}
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not role or not isinstance(content, str):
        raise Invalid(f"chat message {index} needs a string role and content")
    return {"role": role, "content": content}


def new_version(
    name: Any,
    kind: Any,
    prompt: Any,
    config: Any = None,
    labels: Any = None,
    tags: Any = None,
    commit_message: Any = None,
) -> NewVersion:
    """Validate a create request, refusing the first rule it breaks."""
    checked_type, body = check_body(kind, prompt)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise Invalid("config must be a JSON object")
    if tags is None:
        tags = []
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise Invalid("tags must be a list of strings")
    if commit_message is not None and not isinstance(commit_message, str):
        raise Invalid("commit_message must be a string")
    return NewVersion(
        name=check_name(name),
        type=checked_type,
        prompt=body,
        config=config,
        labels=check_labels(labels),
        tags=tuple(dict.fromkeys(tags)),
        commit_message=commit_message or "",
    )


def check_split(weights: Sequence[tuple[Any, Any]]) -> tuple[tuple[int, int], ...]:
    """A traffic split: distinct positive versions with positive integer weights."""
    if not weights:
        raise Invalid("a split needs at least one version with a weight")
    out: dict[int, int] = {}
    for version, weight in weights:
        if not isinstance(version, int) or isinstance(version, bool) or version <= 0:
            raise Invalid(f"a split's version must be a positive integer, got {version!r}")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
            raise Invalid(f"a split's weight must be a positive integer, got {weight!r}")
        if version in out:
            raise Invalid(f"version {version} appears twice in the split")
        out[version] = weight
    return tuple(sorted(out.items()))
