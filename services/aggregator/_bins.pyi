"""Type stub of the C merge of encoded bin stores and sketches (services/aggregator/_bins.c)."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

_S = TypeVar("_S")

def merge_stores(
    stores: list[tuple[int, Sequence[Any]]], n: int, max_cells: int, /
) -> tuple[int, int, bytearray | None] | None: ...
def merge_sketches(
    parts: list[tuple[int, Sequence[Any]]], n: int, max_cells: int, /
) -> (
    tuple[
        bytes,
        bytes,
        bytes,
        bytes,
        bytes,
        tuple[int, int, bytearray | None],
        tuple[int, int, bytearray | None],
    ]
    | None
): ...
def summarise_blobs(
    groups: list[list[bytes]],
    quantiles: tuple[float, ...],
    values: bytes,
    values_low: int,
    make: Callable[[int, float, float, float, dict[float, float]], _S],
    /,
) -> tuple[list[dict[str, _S]], list[dict[str, int]]] | None: ...
