"""`vane.Vane`: one client for both halves of the SDK, prompts (vane.prompts) and tracing (vane.tracing)."""

from __future__ import annotations

from vane.config import ClientConfig
from vane.datasets import DatasetsMixin
from vane.prompts import PromptsMixin
from vane.rollouts import RolloutsMixin
from vane.tracing import TracingMixin


class Vane(PromptsMixin, TracingMixin, DatasetsMixin, RolloutsMixin):
    """Reads VANE_SECRET_KEY, VANE_PUBLIC_KEY, VANE_REGISTRY, VANE_OTLP_ENDPOINT, VANE_API_URL and
    VANE_QUERY_URL (and VANE_REGISTRY_URL, the registry's HTTP API) where no argument is given."""

    def __init__(
        self,
        secret_key: str | None = None,
        public_key: str | None = None,
        registry: str | None = None,
        otlp_endpoint: str | None = None,
        api_url: str | None = None,
        query_url: str | None = None,
        registry_url: str | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(
            secret_key, public_key, registry, otlp_endpoint, api_url, query_url, registry_url
        )
        self._init_prompts()
        self._init_tracing()

    def close(self) -> None:
        self._close_prompts()
        self._close_tracing()
