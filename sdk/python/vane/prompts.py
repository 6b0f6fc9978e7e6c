"""The prompt half of the SDK (issue 3 fills this in)."""

from __future__ import annotations

from vane.config import ClientConfig


class PromptsMixin:
    config: ClientConfig

    def _init_prompts(self) -> None:
        pass

    def _close_prompts(self) -> None:
        pass
