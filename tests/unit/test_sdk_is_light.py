"""An app that installs the SDK gets grpcio, protobuf and OpenTelemetry, and nothing of the server."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"
ALLOWED_DISTRIBUTIONS = {"grpcio", "protobuf", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}


def _requirement_name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def test_the_sdk_distribution_depends_only_on_light_packages() -> None:
    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    assert {_requirement_name(r) for r in project["dependencies"]} <= ALLOWED_DISTRIBUTIONS


def test_the_sdk_imports_nothing_outside_its_dependencies() -> None:
    allowed_roots = {"vane", "grpc", "google", "opentelemetry", "__future__", *sys.stdlib_module_names}
    for path in (SDK / "vane").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed_roots, f"{path.relative_to(SDK)} imports {roots - allowed_roots}"
