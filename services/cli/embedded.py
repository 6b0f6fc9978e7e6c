"""NATS, Postgres and Redis for one machine, started under a directory when none answers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from services.common.settings import Settings


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=0.5):
            return True
    except OSError:
        return False


def unreachable(settings: Settings) -> set[str]:
    """Which of postgres, nats and redis do not answer at their configured URLs."""
    probes = {
        "postgres": (settings.database_url, 5432),
        "nats": (settings.nats_url, 4222),
        "redis": (settings.redis_url, 6379),
    }
    return {name for name, (url, port) in probes.items() if not _answers(url, port)}
