"""charts/vane rendered as tests read it: Helm's own engine through k8s/render.py, documents as dicts."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vane"
SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")

Manifest = dict[str, Any]


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_render", REPO / "k8s" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


renderer = _load_renderer()


def rendered(values: dict[str, Any] | None = None, release: str = "vane") -> list[Manifest]:
    """The chart's objects for these values (a fresh copy: callers may change it)."""
    return copy.deepcopy(_rendered(json.dumps(values, sort_keys=True), release))


@functools.lru_cache(maxsize=64)
def _rendered(values: str, release: str) -> list[Manifest]:
    # A render loads Helm's engine and the chart (about half a second): each value set renders once per run.
    return [yaml.safe_load(document) for _, document in renderer.render(json.loads(values), release=release)]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def route(ingress: Manifest, path: str) -> str:
    """The Service an Ingress sends `path` to, as ingress-nginx with use-regex picks: the paths are tried
    longest first, a Prefix path matching whole segments and an ImplementationSpecific one as a regex."""
    (rule,) = ingress["spec"]["rules"]
    for entry in sorted(rule["http"]["paths"], key=lambda e: len(e["path"]), reverse=True):
        prefix = entry["path"].rstrip("/")
        if entry["pathType"] == "ImplementationSpecific":
            matched = re.match(entry["path"], path) is not None
        else:
            matched = entry["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/"))
        if matched:
            return str(entry["backend"]["service"]["name"])
    raise AssertionError(f"no route for {path}")
