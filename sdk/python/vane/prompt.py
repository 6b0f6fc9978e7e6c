"""The `Prompt` an app gets from `Vane.get_prompt`: one version of a prompt, ready to compile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vane.prompt_template import PromptBody, compile_body, variables_of


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    version: int  # 0 for a fallback
    type: str  # "text" or "chat"
    prompt: PromptBody
    config: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    commit_message: str = ""
    is_fallback: bool = False
    # The label this fetch asked for (production when none was named); None when fetched by version.
    # Runs record it, not labels[0]: a version can hold several labels, a split label serves several.
    label: str | None = None

    @classmethod
    def fallback(cls, name: str, body: PromptBody, config: dict[str, Any] | None = None) -> Prompt:
        """The caller's own prompt, used when the registry cannot be asked: version 0, linked to nothing."""
        kind = "text" if isinstance(body, str) else "chat"
        return cls(name, 0, kind, body, dict(config or {}), variables=tuple(variables_of(body)), is_fallback=True)

    def compile(self, **values: Any) -> PromptBody:
        """A string for a text prompt; for a chat prompt a list of messages, with each placeholder
        filled from the list of messages passed under its name."""
        return compile_body(self.prompt, values)
