"""Settings from the environment: the variables in docs/reference.md, and a port override for every listener."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any


def env_str(name: str, default: str) -> str:
    """A variable's value, or the default when it is unset or empty."""
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int) -> int:
    raw = env_str(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = env_str(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    nats_url: str
    redis_url: str
    # Prefix of every stream, subject, consumer and Redis key: separate stacks (and test runs)
    # share one NATS and one Redis without seeing each other's data.
    namespace: str
    bind_host: str
    registry_grpc_port: int
    registry_http_port: int
    ingest_http_port: int
    ingest_grpc_port: int
    evaluator_port: int
    aggregator_port: int
    alert_port: int
    init_project: str
    init_public_key: str
    init_secret_key: str
    log_level: str
    log_format: str  # json or console
    otel_exporter: str  # none, console or otlp: the services' own traces
    otel_endpoint: str
    shutdown_grace_seconds: float
    db_pool_min: int
    db_pool_max: int
    stream_max_age_hours: float
    stream_max_bytes: int
    max_body_bytes: int
    ingest_workers: int = 1  # ingest processes sharing its ports (SO_REUSEPORT)
    ingest_publish_timeout_seconds: float = 5.0  # no JetStream ack by then: 503
    registry_workers: int = 1  # registry processes sharing its ports (SO_REUSEPORT)
    runs_retention_days: int = 30  # runs (and their scores) kept this long; 0: forever. Rollups stay.
    run_settle_seconds: float = 60.0  # a trace whose root span has not come is counted as a run after this
    regression_min_samples: int = 200  # a moved label's new version is checked once it has this many runs
    regression_margin: float = 0.05  # a significant worsening counts as a regression beyond this
    registry_url: str = ""  # the registry's HTTP API, for the aggregator's experiment promotions
    gateway_port: int = 8000  # `vane up`'s one origin (Caddy) for the dashboard and every public API
    # each alert rule is evaluated this often (a round of 10,000 rules over 1,000 versions: ~0.6 s, 0.4 s CPU)
    alert_evaluate_seconds: float = 5.0
    alert_retry_max_seconds: float = 60.0  # the longest pause between two attempts to deliver a notification
    alert_send_timeout_seconds: float = 10.0  # a receiver that has not answered by then failed this attempt
    alert_resend_seconds: float = 60.0  # a firing alert is posted to Alertmanager again this often
    alert_channel_disable_after_seconds: float = 86400.0  # a channel failing this long is disabled
    alert_public_url: str = "http://127.0.0.1:8083"  # where Alertmanager's generatorURL points

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=env_str("VANE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vane"),
            nats_url=env_str("VANE_NATS_URL", "nats://127.0.0.1:4222"),
            redis_url=env_str("VANE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            namespace=env_str("VANE_NAMESPACE", "vane"),
            bind_host=env_str("VANE_BIND_HOST", "127.0.0.1"),
            registry_grpc_port=env_int("VANE_REGISTRY_GRPC_PORT", 50051),
            registry_http_port=env_int("VANE_REGISTRY_HTTP_PORT", 8081),
            ingest_http_port=env_int("VANE_INGEST_HTTP_PORT", 4318),
            ingest_grpc_port=env_int("VANE_INGEST_GRPC_PORT", 4317),
            evaluator_port=env_int("VANE_EVALUATOR_PORT", 8082),
            aggregator_port=env_int("VANE_AGGREGATOR_PORT", 8080),
            alert_port=env_int("VANE_ALERT_PORT", 8083),
            init_project=env_str("VANE_INIT_PROJECT", ""),
            init_public_key=env_str("VANE_INIT_PUBLIC_KEY", ""),
            init_secret_key=env_str("VANE_INIT_SECRET_KEY", ""),
            log_level=env_str("VANE_LOG_LEVEL", "info"),
            log_format=env_str("VANE_LOG_FORMAT", "json"),
            otel_exporter=env_str("VANE_OTEL_EXPORTER", "none"),
            otel_endpoint=env_str("VANE_OTEL_ENDPOINT", "http://127.0.0.1:4318/v1/traces"),
            shutdown_grace_seconds=env_float("VANE_SHUTDOWN_GRACE_SECONDS", 10.0),
            db_pool_min=env_int("VANE_DB_POOL_MIN", 1),
            db_pool_max=env_int("VANE_DB_POOL_MAX", 10),
            stream_max_age_hours=env_float("VANE_STREAM_MAX_AGE_HOURS", 168.0),
            stream_max_bytes=env_int("VANE_STREAM_MAX_BYTES", 1024**3),
            max_body_bytes=env_int("VANE_MAX_BODY_BYTES", 16 * 1024**2),
            ingest_workers=env_int("VANE_INGEST_WORKERS", 1),
            ingest_publish_timeout_seconds=env_float("VANE_INGEST_PUBLISH_TIMEOUT_SECONDS", 5.0),
            registry_workers=env_int("VANE_REGISTRY_WORKERS", 1),
            runs_retention_days=env_int("VANE_RUNS_RETENTION_DAYS", 30),
            run_settle_seconds=env_float("VANE_RUN_SETTLE_SECONDS", 60.0),
            regression_min_samples=env_int("VANE_REGRESSION_MIN_SAMPLES", 200),
            regression_margin=env_float("VANE_REGRESSION_MARGIN", 0.05),
            registry_url=env_str("VANE_REGISTRY_URL", "")
            or f"http://127.0.0.1:{env_int('VANE_REGISTRY_HTTP_PORT', 8081)}",
            gateway_port=env_int("VANE_GATEWAY_PORT", 8000),
            alert_evaluate_seconds=env_float("VANE_ALERT_EVALUATE_SECONDS", 5.0),
            alert_retry_max_seconds=env_float("VANE_ALERT_RETRY_MAX_SECONDS", 60.0),
            alert_send_timeout_seconds=env_float("VANE_ALERT_SEND_TIMEOUT_SECONDS", 10.0),
            alert_resend_seconds=env_float("VANE_ALERT_RESEND_SECONDS", 60.0),
            alert_channel_disable_after_seconds=env_float("VANE_ALERT_CHANNEL_DISABLE_AFTER_SECONDS", 86400.0),
            alert_public_url=env_str("VANE_ALERT_PUBLIC_URL", "http://127.0.0.1:8083"),
        )

    def as_dict(self) -> dict[str, Any]:
        """For logging at start-up: everything but the secret."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["init_secret_key"] = "***" if self.init_secret_key else ""
        return out


# The variables above with their defaults, for the README's table and `vane up --help`.
ENVIRONMENT = [
    ("VANE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vane", "Postgres: the source of truth"),
    ("VANE_NATS_URL", "nats://127.0.0.1:4222", "NATS with JetStream: the bus between services"),
    ("VANE_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis: the registry's label cache"),
    ("VANE_NAMESPACE", "vane", "prefix of streams, subjects, consumers and Redis keys"),
    ("VANE_BIND_HOST", "127.0.0.1", "address every listener binds (0.0.0.0 in containers)"),
    ("VANE_REGISTRY_GRPC_PORT", "50051", "prompt registry gRPC"),
    ("VANE_REGISTRY_HTTP_PORT", "8081", "prompt registry HTTP"),
    ("VANE_INGEST_HTTP_PORT", "4318", "ingest OTLP/HTTP and scores"),
    ("VANE_INGEST_GRPC_PORT", "4317", "ingest OTLP/gRPC"),
    ("VANE_EVALUATOR_PORT", "8082", "evaluator HTTP"),
    ("VANE_AGGREGATOR_PORT", "8080", "aggregator query API"),
    ("VANE_ALERT_PORT", "8083", "alert HTTP"),
    ("VANE_INIT_PROJECT", "unset", "with the two keys below: a project created at start-up if missing"),
    ("VANE_INIT_PUBLIC_KEY", "unset", "its public key (pk-vane-…)"),
    ("VANE_INIT_SECRET_KEY", "unset", "its secret key (sk-vane-…)"),
    ("VANE_LOG_LEVEL", "info", "debug, info, warning, error"),
    ("VANE_LOG_FORMAT", "json", "json or console"),
    ("VANE_OTEL_EXPORTER", "none", "the services' own traces: none, console or otlp"),
    ("VANE_OTEL_ENDPOINT", "http://127.0.0.1:4318/v1/traces", "where otlp sends them"),
    ("VANE_SHUTDOWN_GRACE_SECONDS", "10", "how long SIGTERM waits for in-flight work"),
    ("VANE_DB_POOL_MIN", "1", "Postgres pool size, least"),
    ("VANE_DB_POOL_MAX", "10", "Postgres pool size, most"),
    ("VANE_STREAM_MAX_AGE_HOURS", "168", "how long JetStream keeps messages"),
    ("VANE_STREAM_MAX_BYTES", "1073741824", "JetStream backlog per stream; when full, ingest answers 503"),
    ("VANE_MAX_BODY_BYTES", "16777216", "largest request body ingest accepts (413 above)"),
    ("VANE_INGEST_WORKERS", "1", "ingest processes sharing its two ports (SO_REUSEPORT)"),
    ("VANE_INGEST_PUBLISH_TIMEOUT_SECONDS", "5", "ingest answers 503 when JetStream has not acked by then"),
    ("VANE_REGISTRY_WORKERS", "1", "registry processes sharing its two ports (SO_REUSEPORT), one per core"),
    ("VANE_RUNS_RETENTION_DAYS", "30", "days runs and their scores are kept (0: forever); rollups are always kept"),
    ("VANE_REGRESSION_MIN_SAMPLES", "200", "runs a moved label's new version needs before it is checked"),
    ("VANE_REGRESSION_MARGIN", "0.05", "a significant worsening beyond this share is a regression"),
    ("VANE_REGISTRY_URL", "http://127.0.0.1:8081", "the registry's HTTP API (the aggregator's promotions)"),
]
