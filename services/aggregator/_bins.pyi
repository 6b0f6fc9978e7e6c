"""Type stub of the C merge of encoded bin stores (services/aggregator/_bins.c)."""

def merge_stores(
    stores: list[tuple[int, list[object]]], n: int, max_cells: int, /
) -> tuple[int, int, bytearray | None] | None: ...
