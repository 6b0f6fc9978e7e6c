"""Where the SDK finds Vane and its key: arguments first, then the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientConfig:
    secret_key: str
    public_key: str
    registry: str  # host:port of the registry's gRPC API
    otlp_endpoint: str  # base URL of ingest's OTLP/HTTP receiver
    api_url: str  # base URL of the HTTP APIs that take writes (ingest: scores)
    query_url: str = "http://127.0.0.1:8080"  # base URL of the aggregator's query API (metrics, compare)
    registry_url: str = "http://127.0.0.1:8081"  # base URL of the registry's HTTP API (rollouts)

    @classmethod
    def resolve(
        cls,
        secret_key: str | None = None,
        public_key: str | None = None,
        registry: str | None = None,
        otlp_endpoint: str | None = None,
        api_url: str | None = None,
        query_url: str | None = None,
        registry_url: str | None = None,
    ) -> ClientConfig:
        # Behind the gateway one origin serves every API: VANE_API_URL alone then points reads there too.
        query = (
            query_url or os.environ.get("VANE_QUERY_URL") or os.environ.get("VANE_API_URL") or "http://127.0.0.1:8080"
        )
        return cls(
            secret_key=secret_key or os.environ.get("VANE_SECRET_KEY", ""),
            public_key=public_key or os.environ.get("VANE_PUBLIC_KEY", ""),
            registry=registry or os.environ.get("VANE_REGISTRY", "127.0.0.1:50051"),
            otlp_endpoint=(otlp_endpoint or os.environ.get("VANE_OTLP_ENDPOINT", "http://127.0.0.1:4318")).rstrip("/"),
            api_url=(api_url or os.environ.get("VANE_API_URL", "http://127.0.0.1:4318")).rstrip("/"),
            query_url=query.rstrip("/"),
            registry_url=(registry_url or os.environ.get("VANE_REGISTRY_URL", "http://127.0.0.1:8081")).rstrip("/"),
        )
