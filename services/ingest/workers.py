"""Several ingest processes on the same two ports (VANE_INGEST_WORKERS); the mechanism is shared
with the registry in services/common/workers.py, which sets VANE_INGEST_WORKER_INDEX on the children."""

from __future__ import annotations

from services.common import workers
from services.common.workers import SharedPortHttpServer, WorkerProcesses, shared_socket

__all__ = ["SharedPortHttpServer", "WorkerProcesses", "shared_socket", "worker_index"]


def worker_index() -> int:
    return workers.worker_index("ingest")
