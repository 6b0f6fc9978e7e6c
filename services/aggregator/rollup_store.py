"""Rollup deltas written into Postgres, inside the caller's transaction: generations' rollups by
version and model (`GENERATIONS`), and runs' rollups by app version (`RUNS`).

Each cell is added into its row: missing rows are created, then all are locked in one key order
(replicas adding to the same rows never deadlock), merged in Python (counters, exact cost sums,
sketches) and written back with one UPDATE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from services.aggregator.rollup import Cell, CellId, absorb_into_blobs, usd
from services.aggregator.store import Conn


@dataclass(frozen=True)
class RollupTable:
    """A rollup table: its name, the key columns after (project_id, width_minutes, bucket) with their
    types, the column counting what it rolls up, and whether it splits cost into input and output."""

    name: str
    keys: tuple[tuple[str, str], ...]
    count: str
    cost_split: bool

    @cached_property
    def key_columns(self) -> str:
        return ", ".join(["project_id", "width_minutes", "bucket", *(c for c, _ in self.keys)])

    @cached_property
    def unnest_keys(self) -> str:
        types = ["uuid", "int", "bigint", *(t for _, t in self.keys)]
        return "unnest(" + ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1)) + ")"

    @cached_property
    def order(self) -> str:
        # COLLATE "C" orders text by code point, as Python sorts str: both steps lock rows in one order.
        columns = [c + (' COLLATE "C"' if t == "text" else "") for c, t in self.keys]
        return ", ".join(["project_id", "width_minutes", "bucket", *columns])

    @cached_property
    def counters(self) -> tuple[tuple[str, str, str], ...]:
        """(column, SQL type, Cell attribute) of every counter the cells add to."""
        costs = [("input_cost", "numeric", "input_cost"), ("output_cost", "numeric", "output_cost")]
        return (
            (self.count, "bigint", "generations"),
            ("error_count", "bigint", "errors"),
            ("input_tokens", "bigint", "input_tokens"),
            ("output_tokens", "bigint", "output_tokens"),
            ("cost", "numeric", "cost"),
            *(costs if self.cost_split else []),
        )

    @cached_property
    def update(self) -> str:
        n = 3 + len(self.keys)
        values = [*self.counters, ("first_ns", "bigint", ""), ("last_ns", "bigint", ""), ("sketches", "bytea", "")]
        arrays = ", ".join(
            f"${i}::{t}[]" for i, t in enumerate(["uuid", "int", "bigint", *(t for _, t in self.keys)], 1)
        )
        arrays += ", " + ", ".join(f"${n + i}::{t}[]" for i, (_, t, _) in enumerate(values, 1))
        names = [f"v{i}" for i in range(len(values))]
        sets = ", ".join(f"{column} = u.{name}" for (column, _, _), name in zip(values, names, strict=True))
        key = ["project_id", "width_minutes", "bucket", *(c for c, _ in self.keys)]
        return (
            f"UPDATE {self.name} r SET {sets} FROM unnest({arrays}) AS u({', '.join(key + names)}) "
            f"WHERE ({', '.join('r.' + c for c in key)}) = ({', '.join('u.' + c for c in key)})"
        )


GENERATIONS = RollupTable(
    "rollups",
    (
        ("project_name", "text"),
        ("app_version", "text"),
        ("prompt_name", "text"),
        ("prompt_version", "int"),
        ("model", "text"),
    ),
    "generation_count",
    cost_split=True,
)
RUNS = RollupTable("run_rollups", (("project_name", "text"), ("app_version", "text")), "run_count", cost_split=False)


def _key_arrays(table: RollupTable, ids: Sequence[CellId]) -> list[list]:
    return [
        [i[0] for i in ids],
        [i[1] for i in ids],
        [i[2] for i in ids],
        *([getattr(i[3], column) for i in ids] for column, _ in table.keys),
    ]


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


async def add_to_rollups(conn: Conn, cells: dict[CellId, Cell], table: RollupTable = GENERATIONS) -> None:
    """Add each cell into its row of `table` (a cell of negative counts retracts what it names)."""
    if not cells:
        return
    ids = sorted(cells)
    keys = _key_arrays(table, ids)
    await conn.execute(
        f"INSERT INTO {table.name} ({table.key_columns}) SELECT * FROM {table.unnest_keys} ON CONFLICT DO NOTHING",
        *keys,
    )
    current = await conn.fetch(
        f"SELECT r.* FROM {table.name} r JOIN {table.unnest_keys} AS u({table.key_columns}) "
        f"USING ({table.key_columns}) ORDER BY {table.order} FOR UPDATE OF r",
        *keys,
    )
    key_type = type(ids[0][3])
    rows = {
        (r["project_id"], r["width_minutes"], r["bucket"], key_type(*(r[c] for c, _ in table.keys))): r for r in current
    }
    stored = [rows[cid] for cid in ids]
    new = [cells[cid] for cid in ids]
    pairs = list(zip(stored, new, strict=True))
    counters = [
        [r[column] + (usd(getattr(c, attribute)) if kind == "numeric" else getattr(c, attribute)) for r, c in pairs]
        for column, kind, attribute in table.counters
    ]
    await conn.execute(
        table.update,
        *keys,
        *counters,
        [_earliest(r["first_ns"], c.first_ns) for r, c in pairs],
        [_latest(r["last_ns"], c.last_ns) for r, c in pairs],
        absorb_into_blobs([r["sketches"] for r in stored], new),
    )
