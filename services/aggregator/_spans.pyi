"""Type stub of the C decoder of SpanBatch messages (services/aggregator/_spans.c)."""

import uuid
from collections.abc import Callable

def decode_span_batch(
    data: bytes,
    layout: tuple[int, ...],
    schema_version: int,
    not_generations: tuple[bytes, ...],
    project_of: Callable[[str], uuid.UUID],
    /,
) -> (
    tuple[
        int,
        bytes,
        bytes,
        list[tuple[uuid.UUID, str, str, str, int, str]],
        bytes,
        bytes,
        list[uuid.UUID],
        list[int],
        list[tuple[str, int]],
    ]
    | None
): ...
