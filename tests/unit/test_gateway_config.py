"""The gateway's Caddy config, as `caddy validate` (the real binary) sees it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from services.gateway.caddy import caddy_binary, caddy_config
from services.gateway.routes import DEFAULT_SERVICE, ROUTES

UPSTREAMS = {
    name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(("registry", "ingest", "evaluator", "aggregator", "alert"))
}


def test_caddy_accepts_the_config_rendered_from_the_route_table(tmp_path: Path) -> None:
    path = tmp_path / "caddy.json"
    path.write_text(json.dumps(caddy_config("127.0.0.1:8000", UPSTREAMS)))
    checked = subprocess.run(
        [caddy_binary(), "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_route_proxies_to_its_service_in_the_tables_order_and_the_rest_to_the_default() -> None:
    server = caddy_config("127.0.0.1:8000", UPSTREAMS)["apps"]["http"]["servers"]["vane"]
    assert server["listen"] == ["127.0.0.1:8000"]
    routes = server["routes"]
    assert [r["match"][0]["path"] for r in routes[:-1]] == [list(route.paths) for route in ROUTES]
    dials = [r["handle"][0]["upstreams"][0]["dial"] for r in routes]
    assert dials == [UPSTREAMS[route.service] for route in ROUTES] + [UPSTREAMS[DEFAULT_SERVICE]]
    assert "match" not in routes[-1] and all(r["terminal"] for r in routes)


def test_no_path_pattern_is_listed_twice() -> None:
    patterns = [p for route in ROUTES for p in route.paths]
    assert len(patterns) == len(set(patterns))
