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
