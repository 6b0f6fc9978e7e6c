"""What a key may do: the four scopes, and the one table that says which scope each route needs.

Every HTTP route of every service is decided here, from its method and path, by the first rule
that matches; the last rules give every other read `read` and every other write `write`, so a new
route is never unguarded. gRPC methods are listed by their full name; a method missing from the
table is refused (tests/integration/test_security_scopes.py walks every OpenAPI document and
every gRPC service against these tables).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from services.common.errors import Forbidden, Invalid


class Scope(StrEnum):
    INGEST = "ingest"  # send traces and scores
    READ = "read"  # metrics, runs, prompts
    WRITE = "write"  # prompts, labels, rules, experiments, rollouts, prices
    ADMIN = "admin"  # keys, the audit log and the project


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
_READ_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


@dataclass(frozen=True)
class Rule:
    """Requests whose method is in `methods` (any, when empty) and whose whole path matches `path`
    need `scope`; None means the route is open (health, metrics, the OpenAPI document)."""

    path: re.Pattern[str]
    scope: Scope | None
    methods: frozenset[str] = frozenset()
    why: str = ""

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and self.path.fullmatch(path) is not None


def _rule(path: str, scope: Scope | None, methods: Iterable[str] = (), why: str = "") -> Rule:
    return Rule(re.compile(path), scope, frozenset(methods), why)


_TRACE_PATHS = r"/v1/(traces|logs)|/api/public/otel/v1/(traces|logs)|/tracer/v1/traces"

HTTP_RULES: tuple[Rule, ...] = (
    _rule(r"/healthz|/readyz|/metrics|/schema(/.*)?", None, why="probes, Prometheus and the OpenAPI document"),
    _rule(r"/|/ui/.*", None, ["GET", "HEAD"], why="the dashboard's page and assets (the page asks for a key)"),
    _rule(_TRACE_PATHS, Scope.INGEST, ["POST"], why="OTLP/HTTP traces, and logs with GenAI events"),
    _rule(r"/api/v1/scores|/api/public/scores|/api/public/ingestion", Scope.INGEST, ["POST"], why="scores"),
    _rule(
        r"/tracer/custom-eval-config/.*",
        Scope.INGEST,
        ["POST"],
        why="Future AGI's traceAI asks these with the key it sends traces with",
    ),
    _rule(r"/api/v1/(keys|audit)(/.*)?", Scope.ADMIN, why="keys and the audit log are the project's administration"),
    _rule(r"/api/v1/(versions/)?winner", Scope.READ, ["POST"], why="choosing a winner computes, it changes nothing"),
    _rule(r"/.*", Scope.READ, _READ_METHODS, why="every other read"),
    _rule(r"/.*", Scope.WRITE, why="every other write"),
)

# gRPC: full method name → scope. A method not listed here is refused.
GRPC_SCOPES: dict[str, Scope] = {
    "/vane.v1.PromptService/GetPrompt": Scope.READ,
    "/vane.v1.PromptService/WatchPrompts": Scope.READ,
    "/vane.v1.PromptService/ListPrompts": Scope.READ,
    "/vane.v1.PromptService/CreatePrompt": Scope.WRITE,
    "/vane.v1.PromptService/SetLabels": Scope.WRITE,
    "/vane.v1.PromptService/SetLabelSplit": Scope.WRITE,
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": Scope.INGEST,
}


def http_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs, or None for an open route."""
    method = method.upper()
    for rule in HTTP_RULES:
        if rule.matches(method, path):
            return rule.scope
    return Scope.WRITE  # unreachable (the last rule matches every path), kept fail-closed


def grpc_scope(method: str) -> Scope:
    """The scope a gRPC method needs; an unlisted method needs a scope no key holds."""
    scope = GRPC_SCOPES.get(method)
    if scope is None:
        raise Forbidden(f"the method {method} has no scope: no key may call it")
    return scope


def parse_scopes(values: object) -> frozenset[Scope]:
    """Scopes from a request body: a non-empty list of known names."""
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise Invalid(f"scopes must be a non-empty list of {sorted(s.value for s in Scope)}")
    unknown = sorted(set(values) - {s.value for s in Scope})
    if unknown:
        raise Invalid(f"unknown scopes {unknown}: choose from {sorted(s.value for s in Scope)}")
    return frozenset(Scope(v) for v in values)


def require(held: frozenset[Scope], needed: Scope | None) -> None:
    """Raise Forbidden, naming the scope, when a key lacks what the route needs."""
    if needed is not None and needed not in held:
        raise Forbidden(
            f"this key lacks the '{needed.value}' scope this route needs",
            details={"required_scope": needed.value, "key_scopes": sorted(s.value for s in held)},
        )


def ordered(scopes: Iterable[Scope]) -> list[str]:
    """Scopes in their declared order, as stored and shown."""
    held = set(scopes)
    return [s.value for s in Scope if s in held]
