"""The prompt half of the SDK: `get_prompt` from an in-process cache kept current by WatchPrompts,
with the caller's fallback when the registry cannot be reached; and the registry's writes."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from vane.config import ClientConfig
from vane.prompt import Prompt
from vane.prompt_cache import Entry, Key, PromptCache, cache_key
from vane.prompt_template import PromptBody
from vane.prompt_watch import PromptWatcher
from vane.v1 import prompts_pb2 as pb
from vane.v1 import prompts_pb2_grpc

log = logging.getLogger("vane.prompts")

CALL_TIMEOUT_SECONDS = 3.0
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


class PromptError(Exception):
    """The registry could not give the prompt asked for."""


class PromptNotFound(PromptError):
    pass


class PromptRejected(PromptError):
    """The registry refused a write (a broken rule) or the key."""


class RegistryUnavailable(PromptError):
    """The registry did not answer, and nothing cached or given as fallback could stand in."""


def prompt_of(message: pb.PromptVersion) -> Prompt:
    body: PromptBody
    if message.type == "text":
        body = message.text
    else:
        body = [
            {"type": "placeholder", "name": m.name}
            if m.type == "placeholder"
            else {"role": m.role, "content": m.content}
            for m in message.messages
        ]
    config = json.loads(message.config_json) if message.config_json else MessageToDict(message.config)
    return Prompt(
        name=message.name,
        version=message.version,
        type=message.type,
        prompt=body,
        config=config,
        labels=tuple(message.labels),
        tags=tuple(message.tags),
        variables=tuple(message.variables),
        commit_message=message.commit_message,
    )


def _message_dict(message: pb.ChatMessage) -> dict[str, Any]:
    if message.type == "placeholder":
        return {"type": "placeholder", "name": message.name}
    return {"role": message.role, "content": message.content}


def _error_message(exc: grpc.RpcError) -> str:
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    try:
        return str(json.loads(details)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(details)


class PromptsMixin:
    config: ClientConfig

    def _init_prompts(self) -> None:
        self._prompt_cache = PromptCache()
        self._prompt_entries = self._prompt_cache.entries
        self._prompt_channel = grpc.insecure_channel(self.config.registry, options=CHANNEL_OPTIONS)
        self._prompt_stub = prompts_pb2_grpc.PromptServiceStub(self._prompt_channel)
        self._prompt_metadata = (("authorization", f"Bearer {self.config.secret_key}"),)
        self._prompt_refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vane-prompt-refresh")
        self._prompt_watcher: PromptWatcher | None = None
        self._prompt_watch_lock = threading.Lock()

    def _close_prompts(self) -> None:
        if self._prompt_watcher is not None:
            self._prompt_watcher.stop()
        self._prompt_refresher.shutdown(wait=False, cancel_futures=True)
        self._prompt_channel.close()

    # -- reads ------------------------------------------------------------------------------------
    def get_prompt(
        self,
        name: str,
        label: str | None = None,
        version: int | None = None,
        fallback: PromptBody | None = None,
        cache_ttl_seconds: float = 60,
        sticky_key: str | None = None,
    ) -> Prompt:
        """A prompt version: from the cache when held (a stale one is served at once and refreshed
        in the background), else from the registry; with the registry unreachable and nothing
        cached, `fallback` as a Prompt with is_fallback=True and version 0, or RegistryUnavailable."""
        key = cache_key(name, label, version)
        entry = self._prompt_entries.get(key)
        if entry is not None and cache_ttl_seconds > 0:
            if entry.fresh_until < time.monotonic():
                self._refresh_later(key, cache_ttl_seconds)
            return entry.single if entry.single is not None else entry.pick(sticky_key)
        return self._fetch_now(key, cache_ttl_seconds, fallback, sticky_key)

    async def aget_prompt(
        self,
        name: str,
        label: str | None = None,
        version: int | None = None,
        fallback: PromptBody | None = None,
        cache_ttl_seconds: float = 60,
        sticky_key: str | None = None,
    ) -> Prompt:
        """`get_prompt` for async apps: a cached prompt comes back without leaving the event loop."""
        entry = self._prompt_entries.get(cache_key(name, label, version))
        if entry is not None and cache_ttl_seconds > 0:
            return self.get_prompt(name, label, version, fallback, cache_ttl_seconds, sticky_key)
        call = functools.partial(self.get_prompt, name, label, version, fallback, cache_ttl_seconds, sticky_key)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def _fetch_now(self, key: Key, ttl: float, fallback: PromptBody | None, sticky_key: str | None) -> Prompt:
        self._ensure_watching()
        try:
            entry = self._fetch(key, ttl)
        except PromptError as exc:
            stale = self._prompt_entries.get(key)
            if stale is not None and not isinstance(exc, PromptNotFound):
                return stale.pick(sticky_key)
            if fallback is not None:
                log.warning("serving the fallback of prompt %r: %s", key[0], exc)
                return Prompt.fallback(key[0], fallback)
            raise
        return entry.pick(sticky_key)

    def _fetch(self, key: Key, ttl: float) -> Entry:
        """Ask the registry and cache the answer; raise a PromptError that says what went wrong."""
        name, label, version = key
        request = pb.GetPromptRequest(name=name, label=label, version=version)
        try:
            response = self._prompt_stub.GetPrompt(
                request, metadata=self._prompt_metadata, timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise self._prompt_error(exc, f"prompt {name!r} ({f'version {version}' if version else label})") from None
        choices = [(prompt_of(w.prompt), w.weight) for w in response.split] or [(prompt_of(response.prompt), 100)]
        entry = Entry.of(time.monotonic() + ttl, response.resolved_label, choices)
        held = self._prompt_entries.get(key)
        if held is not None and held.same_answer(entry):
            # Nothing changed (a watch event that raced our first fetch): the app keeps its objects.
            held.fresh_until = entry.fresh_until
            return held
        self._prompt_cache.put(key, entry)
        return entry

    def _prompt_error(self, exc: grpc.RpcError, what: str) -> PromptError:
        code = exc.code() if hasattr(exc, "code") else None
        message = _error_message(exc)
        if code == grpc.StatusCode.NOT_FOUND:
            return PromptNotFound(f"{what} not found in the registry at {self.config.registry}: {message}")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
            return PromptRejected(f"the registry at {self.config.registry} refused {what}: {message}")
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return PromptRejected(f"the registry at {self.config.registry} refused {what}: {message}")
        return RegistryUnavailable(f"the prompt registry at {self.config.registry} is unreachable ({code}): {message}")

    def _refresh_later(self, key: Key, ttl: float) -> None:
        if self._prompt_cache.begin_refresh(key):
            try:
                self._prompt_refresher.submit(self._refresh, key, ttl)
            except RuntimeError:  # the client is closing
                self._prompt_cache.end_refresh(key)

    def _refresh(self, key: Key, ttl: float | None = None) -> None:
        """Fetch a cached key again: gone from the registry evicts it; unreachable keeps it, stale."""
        try:
            current = self._prompt_entries.get(key)
            if ttl is None:
                ttl = max(current.fresh_until - time.monotonic(), 60.0) if current is not None else 60.0
            self._fetch(key, ttl)
        except PromptNotFound:
            self._prompt_cache.evict(key)
        except PromptError as exc:
            self._prompt_cache.mark_stale(key)
            log.debug("refresh of prompt %r failed: %s", key[0], exc)
        finally:
            self._prompt_cache.end_refresh(key)

    # -- the watch --------------------------------------------------------------------------------
    def _ensure_watching(self) -> None:
        if self._prompt_watcher is not None:
            return
        with self._prompt_watch_lock:
            if self._prompt_watcher is not None:
                return
            self._prompt_watcher = PromptWatcher(
                lambda: self._prompt_stub.WatchPrompts(pb.WatchPromptsRequest(), metadata=self._prompt_metadata),
                self._prompt_changed,
                self._resync_prompts,
                self.config.registry,
            )
            self._prompt_watcher.start()

    def _prompt_changed(self, event: pb.WatchPromptsResponse) -> None:
        """A version or label of this project changed: refetch what we hold of that prompt now."""
        for key in self._prompt_cache.keys_of(event.name):
            if key[2]:  # a version: immutable, so only its removal matters
                if event.kind == "version_removed" and key[2] == event.version:
                    self._prompt_cache.evict(key)
                continue
            self._prompt_cache.begin_refresh(key)
            self._refresh(key)

    def _resync_prompts(self) -> None:
        for key in self._prompt_cache.keys_of():
            if not key[2] and self._prompt_cache.begin_refresh(key):
                self._refresh(key)

    def _forget_prompt(self, name: str) -> None:
        for key in self._prompt_cache.keys_of(name):
            if not key[2]:
                self._prompt_cache.evict(key)

    # -- writes -----------------------------------------------------------------------------------
    def create_prompt(
        self,
        name: str,
        prompt: PromptBody,
        type: str | None = None,
        config: Mapping[str, Any] | None = None,
        labels: Sequence[str] = (),
        tags: Sequence[str] = (),
        commit_message: str = "",
    ) -> Prompt:
        """Write the next version of a prompt (`latest` moves onto it, and the labels given)."""
        kind = type or ("text" if isinstance(prompt, str) else "chat")
        request = pb.CreatePromptRequest(
            name=name,
            type=kind,
            labels=list(labels),
            tags=list(tags),
            commit_message=commit_message,
            config_json=json.dumps(dict(config or {})),
        )
        if isinstance(prompt, str):
            request.text = prompt
        else:
            request.messages.extend(pb.ChatMessage(**{k: str(v) for k, v in m.items()}) for m in prompt)
        response = self._write(self._prompt_stub.CreatePrompt, request, f"prompt {name!r}")
        self._forget_prompt(name)
        return prompt_of(response.prompt)

    def set_labels(self, name: str, version: int, labels: Sequence[str]) -> Prompt:
        """Move these labels onto this version."""
        request = pb.SetLabelsRequest(name=name, version=version, labels=list(labels))
        response = self._write(self._prompt_stub.SetLabels, request, f"prompt {name!r} version {version}")
        self._forget_prompt(name)
        return prompt_of(response.prompt)

    def set_label_split(self, name: str, label: str, weights: Mapping[int, int]) -> dict[int, int]:
        """Point a label at several versions with relative weights ({2: 90, 3: 10}) for an A/B test."""
        request = pb.SetLabelSplitRequest(
            name=name, label=label, weights=[pb.VersionWeight(version=v, weight=w) for v, w in weights.items()]
        )
        response = self._write(self._prompt_stub.SetLabelSplit, request, f"label {label!r} of prompt {name!r}")
        self._forget_prompt(name)
        return {w.prompt.version: w.weight for w in response.split}

    def _write(self, method: Any, request: Any, what: str) -> Any:
        try:
            return method(request, metadata=self._prompt_metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise self._prompt_error(exc, what) from None
