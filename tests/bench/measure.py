"""What the benchmarks measure beside throughput: a process's peak memory."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class PeakRss:
    """Peak resident memory (MB) of a process and its children, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.peak = 0.0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                procs = [self._proc, *self._proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs) / 1e6)
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu_seconds(proc: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = proc.cpu_times()
        return times.user + times.system
    return 0.0


class CpuSplit:
    """CPU seconds each part of the stack used between `start()` and `stop()`: the services (with their
    workers), NATS, this database's Postgres backends plus Postgres's own background processes (WAL
    writer, checkpointer, autovacuum), and the bench's own client."""

    def __init__(self, services: dict[str, int], database: str) -> None:
        self.services = services
        self.database = database
        self._before: dict[tuple[str, int], float] = {}

    def _groups(self) -> dict[tuple[str, int], float]:
        out: dict[tuple[str, int], float] = {}
        for name, pid in self.services.items():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for p in (root, *root.children(recursive=True)):
                    out[(name, p.pid)] = _cpu_seconds(p)
        for p in psutil.process_iter(["name", "cmdline"]):
            command = " ".join(p.info["cmdline"] or ())
            if p.info["name"] == "nats-server":
                out[("NATS", p.pid)] = _cpu_seconds(p)
            # a backend names its database; background processes (walwriter, autovacuum …) name none
            elif command.startswith("postgres:") and (self.database in command or " 127." not in command):
                out[("Postgres", p.pid)] = _cpu_seconds(p)
        me = psutil.Process()
        out[("bench client", me.pid)] = _cpu_seconds(me)
        return out

    def start(self) -> None:
        self._before = self._groups()

    def stop(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (group, pid), seconds in self._groups().items():
            totals[group] = totals.get(group, 0.0) + seconds - self._before.get((group, pid), 0.0)
        return totals
