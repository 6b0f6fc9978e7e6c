"""Prompt versions as the registry serves them: protobuf messages built once, with their wire bytes.

A `Resolution` is what a selector (a label, or a version number) resolves to: one version, or
a label's weighted split. It is what the caches hold, so a hot fetch only picks and copies bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2
from vane.prompt_split import choose
from vane.v1 import prompts_pb2 as pb


def version_message(row: Any, labels: Sequence[str]) -> pb.PromptVersion:
    """A prompt_versions row (prompt and config as JSON text) as the wire message."""
    body = json.loads(row["prompt"])
    config = json.loads(row["config"])
    message = pb.PromptVersion(
        name=row["name"],
        version=row["version"],
        type=row["type"],
        labels=sorted(labels),
        tags=list(row["tags"]),
        commit_message=row["commit_message"],
        variables=list(row["variables"]),
        config_json=json.dumps(config, separators=(",", ":")),
    )
    message.created_at.FromDatetime(row["created_at"])
    _set_struct(message.config, config)
    if row["type"] == "text":
        message.text = body
    else:
        message.messages.extend(pb.ChatMessage(**m) for m in body)
    return message


def _set_struct(target: struct_pb2.Struct, config: dict[str, Any]) -> None:
    try:
        target.update(config)
    except (ValueError, TypeError):  # a value Struct cannot hold: config_json still carries it
        target.Clear()


def version_json(message: pb.PromptVersion) -> dict[str, Any]:
    """The HTTP API's shape of one version."""
    body: Any = message.text if message.type == "text" else [_message_json(m) for m in message.messages]
    created = message.created_at.ToDatetime(tzinfo=UTC) if message.HasField("created_at") else datetime.now(UTC)
    return {
        "name": message.name,
        "version": message.version,
        "type": message.type,
        "prompt": body,
        "config": json.loads(message.config_json or "{}"),
        "labels": list(message.labels),
        "tags": list(message.tags),
        "variables": list(message.variables),
        "commit_message": message.commit_message,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def _message_json(message: pb.ChatMessage) -> dict[str, str]:
    if message.type == "placeholder":
        return {"type": "placeholder", "name": message.name}
    return {"role": message.role, "content": message.content}


class Resolution:
    """One selector's answer: (version, weight) choices, the messages, and each answer's wire bytes."""

    __slots__ = ("_responses", "by_version", "label", "name", "weights")

    def __init__(self, name: str, label: str, choices: Sequence[tuple[pb.PromptVersion, int]]) -> None:
        if not choices:
            raise ValueError("a resolution needs at least one version")
        self.name = name
        self.label = label
        self.weights = tuple(sorted((m.version, w) for m, w in choices))
        self.by_version = {m.version: m for m, _ in choices}
        split = [pb.WeightedVersion(prompt=m, weight=w) for m, w in choices] if len(choices) > 1 else []
        self._responses = {
            m.version: pb.GetPromptResponse(prompt=m, resolved_label=label, split=split).SerializeToString()
            for m, _ in choices
        }

    def pick(self, sticky_key: str | None = None) -> int:
        """The version that serves this fetch (the same for a sticky key while the split stands)."""
        if len(self.weights) == 1:
            return self.weights[0][0]
        return choose(self.weights, sticky_key, salt=f"{self.name}\x00{self.label}")

    def response_bytes(self, version: int) -> bytes:
        return self._responses[version]

    def encode(self) -> bytes:
        """For Redis: every choice with its weight, whatever their number."""
        split = [pb.WeightedVersion(prompt=self.by_version[v], weight=w) for v, w in self.weights]
        return pb.GetPromptResponse(resolved_label=self.label, split=split).SerializeToString()

    @classmethod
    def decode(cls, name: str, data: bytes) -> Resolution:
        response = pb.GetPromptResponse.FromString(data)
        return cls(name, response.resolved_label, [(w.prompt, w.weight) for w in response.split])
