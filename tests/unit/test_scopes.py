"""The scope table: which scope each kind of route needs, and how a key's scopes are checked."""

from __future__ import annotations

import pytest

from services.common.errors import Forbidden, Invalid
from services.common.scopes import ALL_SCOPES, GRPC_SCOPES, Scope, grpc_scope, http_scope, parse_scopes, require


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/schema/openapi.json", None),
        ("POST", "/v1/traces", Scope.INGEST),
        ("POST", "/api/public/otel/v1/traces", Scope.INGEST),
        ("POST", "/tracer/v1/traces", Scope.INGEST),
        ("POST", "/api/v1/scores", Scope.INGEST),
        ("POST", "/api/public/scores", Scope.INGEST),
        ("POST", "/tracer/custom-eval-config/check_exists", Scope.INGEST),
        ("GET", "/api/v1/prompts/support-reply", Scope.READ),
        ("GET", "/api/v1/prompts/metrics", Scope.READ),
        ("GET", "/api/v1/runs", Scope.READ),
        ("POST", "/api/v1/winner", Scope.READ),
        ("POST", "/api/v1/prompts", Scope.WRITE),
        ("PATCH", "/api/v1/prompts/support-reply/versions/2", Scope.WRITE),
        ("PUT", "/api/v1/prompts/support-reply/labels/production", Scope.WRITE),
        ("DELETE", "/api/v1/prompts/support-reply/versions/1", Scope.WRITE),
        ("POST", "/api/v1/experiments", Scope.WRITE),
        ("POST", "/api/v1/score-configs", Scope.WRITE),
        ("GET", "/api/v1/score-configs", Scope.READ),
        ("POST", "/api/v1/keys", Scope.ADMIN),
        ("GET", "/api/v1/keys", Scope.ADMIN),
        ("DELETE", "/api/v1/keys/pk-vane-0123", Scope.ADMIN),
        ("GET", "/api/v1/audit", Scope.ADMIN),
    ],
)
def test_each_kind_of_route_needs_its_scope(method: str, path: str, scope: Scope | None) -> None:
    assert http_scope(method, path) == scope


def test_reading_traces_or_scores_needs_read_not_ingest() -> None:
    # an app's ingest key sends traces; it cannot list what was sent
    assert http_scope("GET", "/v1/traces") == Scope.READ
    assert http_scope("GET", "/api/v1/scores") == Scope.READ


def test_a_route_no_rule_names_still_needs_a_scope() -> None:
    assert http_scope("GET", "/api/v1/some-new-thing") == Scope.READ
    assert http_scope("POST", "/api/v1/some-new-thing") == Scope.WRITE
    assert http_scope("GET", "/healthzz") == Scope.READ  # rules match whole paths


def test_grpc_methods_have_their_scopes_and_unknown_methods_none() -> None:
    assert grpc_scope("/vane.v1.PromptService/GetPrompt") == Scope.READ
    assert grpc_scope("/vane.v1.PromptService/WatchPrompts") == Scope.READ
    assert grpc_scope("/vane.v1.PromptService/SetLabels") == Scope.WRITE
    assert grpc_scope("/opentelemetry.proto.collector.trace.v1.TraceService/Export") == Scope.INGEST
    with pytest.raises(Forbidden):
        grpc_scope("/vane.v1.PromptService/DeleteEverything")
    assert set(GRPC_SCOPES.values()) <= ALL_SCOPES


def test_a_missing_scope_is_named_in_the_refusal() -> None:
    require(frozenset({Scope.READ}), Scope.READ)
    require(frozenset(), None)
    with pytest.raises(Forbidden) as refused:
        require(frozenset({Scope.INGEST}), Scope.WRITE)
    assert "'write'" in refused.value.message
    assert refused.value.details == {"required_scope": "write", "key_scopes": ["ingest"]}


@pytest.mark.parametrize("bad", [[], "read", ["read", "root"], [1], None])
def test_scopes_in_a_request_must_be_a_non_empty_list_of_known_names(bad: object) -> None:
    with pytest.raises(Invalid):
        parse_scopes(bad)


def test_scopes_parse_and_repeat_harmlessly() -> None:
    assert parse_scopes(["read", "ingest", "read"]) == {Scope.READ, Scope.INGEST}
