"""The image's HEALTHCHECK: GET /healthz on the HTTP port of the service this container runs.

One image runs every service, so the service comes from PID 1's command line (`vane serve <name>`) and its
port from the same environment the service reads (services.common.settings). A container running anything
else (`vane migrate`, `vane projects create`) has nothing to check and is healthy.

Run: python healthcheck.py [PID]   (PID 1 by default; exit 0 healthy, 1 not)
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from services.common.settings import Settings


def service_of(command: list[str]) -> str | None:
    """The service a `vane serve <name>` command line runs, or None for any other command."""
    for at, word in enumerate(command[:-1]):
        if word == "serve":
            return command[at + 1]
    return None


def http_port(service: str, settings: Settings) -> int:
    ports = {
        "registry": settings.registry_http_port,
        "ingest": settings.ingest_http_port,
        "evaluator": settings.evaluator_port,
        "aggregator": settings.aggregator_port,
        "alert": settings.alert_port,
    }
    return ports[service]


def main(argv: list[str]) -> int:
    pid = argv[1] if len(argv) > 1 else "1"
    command = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
    service = service_of(command)
    if service is None:
        return 0
    url = f"http://127.0.0.1:{http_port(service, Settings.from_env())}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{service}: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
