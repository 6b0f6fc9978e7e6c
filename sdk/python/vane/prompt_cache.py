"""The SDK's in-process prompt cache: what `get_prompt` serves without I/O.

An entry holds a selector's answer (one version, or a split label's weighted versions); it is
fresh until its TTL, then served stale while one background refresh per key runs.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from vane.prompt import Prompt
from vane.prompt_split import choose

PRODUCTION = "production"
# (prompt name, label, version): a label fetch has version 0; a version fetch has label "".
Key = tuple[str, str, int]


def cache_key(name: str, label: str | None, version: int | None) -> Key:
    return (name, "", version) if version else (name, label or PRODUCTION, 0)


@dataclass(slots=True)
class Entry:
    fresh_until: float
    label: str
    weights: tuple[tuple[int, int], ...]
    by_version: dict[int, Prompt]
    single: Prompt | None = field(default=None)

    @classmethod
    def of(cls, fresh_until: float, label: str, choices: Sequence[tuple[Prompt, int]]) -> Entry:
        if label:
            choices = [(dataclasses.replace(p, label=label), w) for p, w in choices]
        weights = tuple(sorted((p.version, w) for p, w in choices))
        by_version = {p.version: p for p, _ in choices}
        single = choices[0][0] if len(choices) == 1 else None
        return cls(fresh_until, label, weights, by_version, single)

    def same_answer(self, other: Entry) -> bool:
        return (self.label, self.weights, self.by_version) == (other.label, other.weights, other.by_version)

    def pick(self, sticky_key: str | None) -> Prompt:
        """The version this fetch serves; a split label draws exactly as the registry does."""
        if self.single is not None:
            return self.single
        name = next(iter(self.by_version.values())).name
        return self.by_version[choose(self.weights, sticky_key, salt=f"{name}\x00{self.label}")]


class PromptCache:
    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}  # read without a lock: dict reads and writes are atomic
        self._refreshing: set[Key] = set()
        self._lock = threading.Lock()

    def put(self, key: Key, entry: Entry) -> None:
        self.entries[key] = entry

    def evict(self, key: Key) -> None:
        self.entries.pop(key, None)

    def mark_stale(self, key: Key) -> None:
        entry = self.entries.get(key)
        if entry is not None:
            entry.fresh_until = 0.0

    def keys_of(self, name: str | None = None) -> list[Key]:
        return [k for k in list(self.entries) if name is None or k[0] == name]

    def begin_refresh(self, key: Key) -> bool:
        """True for the one caller that may refresh this key now."""
        with self._lock:
            if key in self._refreshing:
                return False
            self._refreshing.add(key)
            return True

    def end_refresh(self, key: Key) -> None:
        with self._lock:
            self._refreshing.discard(key)
