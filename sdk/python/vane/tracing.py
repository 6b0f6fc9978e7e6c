"""The tracing half of the SDK (issue 4 fills this in)."""

from __future__ import annotations

from vane.config import ClientConfig


class TracingMixin:
    config: ClientConfig

    def _init_tracing(self) -> None:
        pass

    def _close_tracing(self) -> None:
        pass
