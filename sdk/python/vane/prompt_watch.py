"""A WatchPrompts subscription in a background thread: reconnects with backoff, hands each
change to the client, and says when the stream is (re)established so the client can resync."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import grpc

from vane.v1 import prompts_pb2 as pb

log = logging.getLogger("vane.prompts")

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
# A stream is live; or the replica may have missed changes: either way, refetch what is cached.
RESYNC_KINDS = ("watching", "resync")


class PromptWatcher:
    def __init__(
        self,
        open_stream: Callable[[], Any],
        on_change: Callable[[pb.WatchPromptsResponse], None],
        on_resync: Callable[[], None],
        address: str,
    ) -> None:
        self._open = open_stream
        self._on_change = on_change
        self._on_resync = on_resync
        self._address = address
        self._stopping = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="vane-prompt-watch", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                self._call = self._open()
                for event in self._call:
                    if event.kind in RESYNC_KINDS:
                        self.connected.set()
                        backoff = FIRST_BACKOFF_SECONDS
                        self._on_resync()
                    else:
                        self._on_change(event)
            except grpc.RpcError as exc:
                if self._stopping.is_set():
                    return
                code = exc.code() if hasattr(exc, "code") else None
                log.debug("prompt watch to %s interrupted (%s); reconnecting in %.1fs", self._address, code, backoff)
            except Exception:  # a bug in a callback must not end the subscription
                log.exception("prompt watch callback failed")
            self.connected.clear()
            # jitter: many SDKs that lost the same replica do not come back in step
            self._stopping.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
