"""Settings: CONTRACT's defaults, every port overridable, clear refusals of bad values."""

from __future__ import annotations

import pytest

from services.common.settings import ENVIRONMENT, Settings

PORT_VARIABLES = {
    "VANE_REGISTRY_GRPC_PORT": "registry_grpc_port",
    "VANE_REGISTRY_HTTP_PORT": "registry_http_port",
    "VANE_INGEST_HTTP_PORT": "ingest_http_port",
    "VANE_INGEST_GRPC_PORT": "ingest_grpc_port",
    "VANE_EVALUATOR_PORT": "evaluator_port",
    "VANE_AGGREGATOR_PORT": "aggregator_port",
    "VANE_ALERT_PORT": "alert_port",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, _, _ in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_the_contracts(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings.from_env()
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/vane"
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.registry_grpc_port, s.registry_http_port) == (50051, 8081)
    assert (s.ingest_http_port, s.ingest_grpc_port) == (4318, 4317)
    assert (s.evaluator_port, s.aggregator_port, s.alert_port) == (8082, 8080, 8083)
    assert s.init_project == s.init_public_key == s.init_secret_key == ""


def test_every_port_is_overridden_by_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    for offset, name in enumerate(PORT_VARIABLES):
        clean_env.setenv(name, str(20000 + offset))
    s = Settings.from_env()
    for offset, field in enumerate(PORT_VARIABLES.values()):
        assert getattr(s, field) == 20000 + offset


def test_urls_and_namespace_are_overridden(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VANE_DATABASE_URL", "postgresql://u@db:6543/x")
    clean_env.setenv("VANE_NATS_URL", "nats://bus:1")
    clean_env.setenv("VANE_REDIS_URL", "redis://cache:2/3")
    clean_env.setenv("VANE_NAMESPACE", "staging")
    s = Settings.from_env()
    assert (s.database_url, s.nats_url, s.redis_url, s.namespace) == (
        "postgresql://u@db:6543/x",
        "nats://bus:1",
        "redis://cache:2/3",
        "staging",
    )


def test_an_empty_variable_means_the_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VANE_AGGREGATOR_PORT", "")
    assert Settings.from_env().aggregator_port == 8080


def test_a_port_that_is_not_a_number_is_refused_by_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VANE_ALERT_PORT", "eighty")
    with pytest.raises(SystemExit, match="VANE_ALERT_PORT must be an integer, got 'eighty'"):
        Settings.from_env()


def test_the_secret_never_reaches_the_start_up_log(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VANE_INIT_SECRET_KEY", "sk-vane-secret")
    logged = Settings.from_env().as_dict()
    assert logged["init_secret_key"] == "***"
    assert "sk-vane-secret" not in repr(logged)


def test_every_port_variable_is_in_the_documented_environment() -> None:
    documented = {name for name, _, _ in ENVIRONMENT}
    assert set(PORT_VARIABLES) <= documented
