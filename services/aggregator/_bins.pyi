"""Type stub of the C summary of rollup blobs (services/aggregator/_bins.c)."""

from collections.abc import Callable
from typing import TypeVar

_S = TypeVar("_S")

def summarise_blobs(
    groups: list[list[bytes]],
    quantiles: tuple[float, ...],
    values: bytes,
    values_low: int,
    make: Callable[[int, float, float, float, dict[float, float]], _S],
    /,
) -> tuple[list[dict[str, _S]], list[dict[str, int]]] | None: ...
