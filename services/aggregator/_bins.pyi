"""Type stub of the C merge of encoded bin stores (services/aggregator/_bins.c)."""

def merge_stores(
    stores: list[tuple[int, list[object]]], n: int, max_cells: int, /
) -> tuple[int, int, bytearray | None] | None: ...
def merge_sketches(
    parts: list[tuple[int, list[object]]], n: int, max_cells: int, /
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
