"""Type stub of the C accelerator services/ingest/_canonical.c (see services/ingest/canonical.py)."""

from typing import Any

KINDS: dict[str, int]
OUTPUT_FIELDS: tuple[str, ...]

class Canonicaliser:
    def __init__(
        self,
        names: tuple[tuple[str, bool, bool, tuple[tuple[int, str, int, Any, int], ...]], ...],
        lowered: tuple[dict[str, str], ...],
        prefixes: tuple[str, ...],
        fields: tuple[tuple[int, int, bool], ...],
        invalid: type[Exception],
    ) -> None: ...
    def check(self, body: bytes) -> bool: ...
    def spans(self, body: bytes, context: Any) -> list[bytes] | None: ...
