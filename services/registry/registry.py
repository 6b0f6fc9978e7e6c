"""The registry's operations: resolve a fetch through the caches, write through Postgres, and
announce every change (drop caches here and in Redis, tell other replicas and watchers)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Counter
from vane.v1 import bus_pb2
from vane.v1 import prompts_pb2 as pb

from services.common.errors import NotFound, Unavailable
from services.common.logs import get_logger
from services.registry import store
from services.registry.cache import PromptCache, selector
from services.registry.changes import RESYNC, SCHEMA_VERSION, ChangeFeed, Watchers, watch_event
from services.registry.resolution import Resolution
from services.registry.rules import PRODUCTION, NewVersion, check_label, check_labels, check_name, check_split

log = get_logger(component="registry")
T = TypeVar("T")

STORE_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError)
FETCHES = Counter("vane_registry_fetches_total", "Prompt fetches by where the answer came from", ["source"])
_SECOND_DROP_SECONDS = 0.5  # a reader that filled Redis from Postgres just before a commit is undone


class PromptRegistry:
    def __init__(self, pool: asyncpg.Pool, cache: PromptCache, watchers: Watchers) -> None:
        self.pool = pool
        self.cache = cache
        self.watchers = watchers
        self.origin = secrets.token_hex(8)
        self.feed: ChangeFeed | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._local_hits = FETCHES.labels("local")
        self._redis_hits = FETCHES.labels("redis")
        self._store_hits = FETCHES.labels("postgres")

    # -- reads ------------------------------------------------------------------------------------
    async def resolve(self, project: uuid.UUID, name: str, label: str | None, version: int | None) -> Resolution:
        """What a fetch resolves to: a version number, or a label (`production` when neither is given)."""
        if not version:
            label = label or PRODUCTION
        sel = selector(label, version)
        key = (project, name, sel)
        hit = self.cache.local(key)
        if hit is not None:
            self._local_hits.inc()
            return hit
        generation = self.cache.generation(project, name)
        found = await self.cache.remote(project, name, sel)
        if found is not None:
            self._redis_hits.inc()
        else:
            found = await _from_store(store.fetch_resolution(self.pool, project, name, label, version))
            if found is None:
                what = f"version {version}" if version else f"label {label!r}"
                raise NotFound(f"prompt {name!r} with {what} not found")
            self._store_hits.inc()
            await self.cache.keep_remote(project, name, sel, found, generation)
        self.cache.keep_local(key, found, generation)
        return found

    async def versions(self, project: uuid.UUID, name: str) -> list[pb.PromptVersion]:
        found = await _from_store(store.list_versions(self.pool, project, name))
        if not found:
            raise NotFound(f"prompt {name!r} not found")
        return found

    async def version(self, project: uuid.UUID, name: str, version: int) -> pb.PromptVersion:
        resolution = await self.resolve(project, name, None, version)
        return resolution.by_version[version]

    async def prompts(self, project: uuid.UUID) -> list[tuple[str, str, list[pb.PromptVersion]]]:
        return await _from_store(store.list_prompts(self.pool, project))

    async def allocations(self, project: uuid.UUID, name: str) -> dict[str, list[dict[str, int]]]:
        if not await _from_store(store.prompt_exists(self.pool, project, name)):
            raise NotFound(f"prompt {name!r} not found")
        return await _from_store(store.allocations(self.pool, project, name))

    async def history(self, project: uuid.UUID, name: str) -> list[dict[str, Any]]:
        if not await _from_store(store.prompt_exists(self.pool, project, name)):
            raise NotFound(f"prompt {name!r} not found")
        return await _from_store(store.label_history(self.pool, project, name))

    # -- writes -----------------------------------------------------------------------------------
    async def create(self, project: uuid.UUID, new: NewVersion, by: str) -> pb.PromptVersion:
        version, moves = await _from_store(store.create_version(self.pool, project, new, by))
        await self._announce(project, new.name, bus_pb2.PROMPT_CHANGE_KIND_VERSION_CREATED, version, moves)
        return await self.version(project, new.name, version)

    async def set_labels(
        self, project: uuid.UUID, name: str, version: int, labels: Sequence[str], by: str
    ) -> pb.PromptVersion:
        checked = check_labels(list(labels))
        moves = await _from_store(store.set_labels(self.pool, project, check_name(name), version, checked, by))
        await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED, version, moves)
        return await self.version(project, name, version)

    async def set_split(
        self, project: uuid.UUID, name: str, label: str, weights: Sequence[tuple[Any, Any]], by: str
    ) -> Resolution:
        split = check_split(weights)
        move = await _from_store(store.set_split(self.pool, project, name, check_label(label), split, by))
        main = store.main_version(split) or 0
        await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED, main, [move] if move else [])
        return await self.resolve(project, name, label, None)

    async def announce_move(self, project: uuid.UUID, name: str, move: store.LabelMove | None) -> None:
        """A label move committed elsewhere (a rollout's step): drop caches and tell replicas and watchers."""
        if move is not None:
            main = store.main_version(move.after) or 0
            await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED, main, [move])

    async def remove_label(self, project: uuid.UUID, name: str, label: str, by: str) -> None:
        move = await _from_store(store.remove_label(self.pool, project, name, check_label(label), by))
        await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED, 0, [move])

    async def rollback(self, project: uuid.UUID, name: str, label: str, by: str) -> store.LabelMove:
        move = await _from_store(store.rollback(self.pool, project, name, check_label(label), by))
        main = store.main_version(move.after) or 0
        await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_LABELS_MOVED, main, [move])
        return move

    async def delete_version(self, project: uuid.UUID, name: str, version: int, by: str) -> None:
        moves = await _from_store(store.delete_version(self.pool, project, name, version, by))
        await self._announce(project, name, bus_pb2.PROMPT_CHANGE_KIND_VERSION_REMOVED, version, moves, force=True)

    # -- changes ----------------------------------------------------------------------------------
    async def _announce(
        self,
        project: uuid.UUID,
        name: str,
        kind: bus_pb2.PromptChangeKind.ValueType,
        version: int,
        moves: Sequence[store.LabelMove],
        force: bool = False,
    ) -> None:
        if not moves and not force and kind != bus_pb2.PROMPT_CHANGE_KIND_VERSION_CREATED:
            return  # nothing moved: nobody's copy is stale
        change = bus_pb2.PromptChanged(
            schema_version=SCHEMA_VERSION,
            project_id=str(project),
            prompt_name=name,
            version=version,
            labels=[m.label for m in moves],
            kind=kind,
            origin=self.origin,
        )
        self.apply(change)
        await self.cache.drop_remote(project, name)
        self._later(self._drop_again(project, name))
        if self.feed is not None:
            await self.feed.publish(change)
        log.info(
            "prompt_changed", prompt=name, kind=watch_event(change).kind, version=version, labels=list(change.labels)
        )

    def apply(self, change: bus_pb2.PromptChanged) -> None:
        """A change from any replica: drop local copies, tell this project's watchers (once)."""
        project = uuid.UUID(change.project_id)
        self.cache.drop_local(project, change.prompt_name)
        self.watchers.push(project, watch_event(change))

    def received(self, change: bus_pb2.PromptChanged) -> None:
        """From the change feed: this replica's own changes were applied when made."""
        if change.origin != self.origin:
            self.apply(change)

    def resync(self) -> None:
        """The change feed may have missed messages: forget local copies, watchers refetch."""
        self.cache.clear_local()
        self.watchers.push_all(pb.WatchPromptsResponse(kind=RESYNC))

    async def _drop_again(self, project: uuid.UUID, name: str) -> None:
        await asyncio.sleep(_SECOND_DROP_SECONDS)
        self.cache.drop_local(project, name)
        await self.cache.drop_remote(project, name)

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _from_store(work: Awaitable[T]) -> T:
    """Postgres unreachable is a 503 the client may retry, not a 500."""
    try:
        return await work
    except STORE_ERRORS as exc:
        raise Unavailable(f"the prompt store (Postgres) is unreachable: {exc}") from exc


from_store = _from_store  # for the registry's other stores (rollouts)
