"""Prompt changes between replicas and to watching SDKs.

A replica that writes publishes a PromptChanged on core NATS; every replica (itself included)
drops its cached copies and pushes the change to its WatchPrompts subscribers of that project.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator

from nats.aio.msg import Msg
from vane.v1 import bus_pb2
from vane.v1 import prompts_pb2 as pb

from services.common.bus import Bus
from services.common.logs import get_logger

log = get_logger(component="registry-changes")

SCHEMA_VERSION = 1
KINDS = {
    bus_pb2.PROMPT_CHANGE_KIND_VERSION_CREATED: "version_created",
    bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED: "labels_moved",
    bus_pb2.PROMPT_CHANGE_KIND_VERSION_REMOVED: "version_removed",
}
WATCHING = "watching"  # first message of a stream: the subscription is live
RESYNC = "resync"  # this replica may have missed changes: refetch what you hold
CLOSING = pb.WatchPromptsResponse(kind="closing")  # the replica is stopping: the stream ends
_QUEUE_SIZE = 1000


def watch_event(change: bus_pb2.PromptChanged) -> pb.WatchPromptsResponse:
    return pb.WatchPromptsResponse(
        name=change.prompt_name, version=change.version, labels=list(change.labels), kind=KINDS.get(change.kind, "")
    )


class Watchers:
    """The WatchPrompts streams open on this replica, by project."""

    def __init__(self) -> None:
        self._queues: dict[uuid.UUID, set[asyncio.Queue[pb.WatchPromptsResponse]]] = {}

    @contextlib.contextmanager
    def subscribe(self, project: uuid.UUID) -> Iterator[asyncio.Queue[pb.WatchPromptsResponse]]:
        queue: asyncio.Queue[pb.WatchPromptsResponse] = asyncio.Queue(_QUEUE_SIZE)
        self._queues.setdefault(project, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._queues.get(project)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    self._queues.pop(project, None)

    def close(self) -> None:
        """End every stream (at shutdown), so that SDKs reconnect elsewhere at once."""
        for subscribers in self._queues.values():
            for queue in subscribers:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(CLOSING)

    def count(self) -> int:
        return sum(len(s) for s in self._queues.values())

    def push(self, project: uuid.UUID, event: pb.WatchPromptsResponse) -> None:
        for queue in self._queues.get(project, ()):
            _offer(queue, event)

    def push_all(self, event: pb.WatchPromptsResponse) -> None:
        for subscribers in self._queues.values():
            for queue in subscribers:
                _offer(queue, event)


def _offer(queue: asyncio.Queue[pb.WatchPromptsResponse], event: pb.WatchPromptsResponse) -> None:
    """A watcher too slow to keep up loses the detail but not the fact: it is told to resync."""
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(pb.WatchPromptsResponse(kind=RESYNC))


class ChangeFeed:
    """Publishes this replica's changes and hands every replica's changes to `on_change`."""

    def __init__(self, bus: Bus, on_change: Callable[[bus_pb2.PromptChanged], None]) -> None:
        self._bus = bus
        self._on_change = on_change
        self._subject = bus.topology.prompt_changes_subject
        self._sub: object | None = None

    async def start(self) -> None:
        self._sub = await self._bus.nc.subscribe(self._subject, cb=self._received)

    async def publish(self, change: bus_pb2.PromptChanged) -> None:
        try:
            await self._bus.nc.publish(self._subject, change.SerializeToString())
        except Exception as exc:  # the write is committed; replicas' short cache lifetime covers a lost message
            log.warning("change_publish_failed", prompt=change.prompt_name, error=str(exc))

    async def _received(self, msg: Msg) -> None:
        try:
            change = bus_pb2.PromptChanged.FromString(msg.data)
        except Exception as exc:
            log.warning("change_undecodable", error=str(exc))
            return
        if change.schema_version > SCHEMA_VERSION:
            log.warning("change_schema_unknown", schema_version=change.schema_version)
        self._on_change(change)

    def reconnects(self) -> int:
        return int(self._bus.nc.stats.get("reconnects", 0))
