"""Trace assembly: each trace's figures kept in `trace_runs` as its spans are stored, in any order,
across batches and replicas, and the run rollups' changes that follow, inside the batch's transaction.

- A trace first seen in a batch is inserted with that batch's figures (counted at once when its root
  span is among them): one statement, the common case.
- A trace seen before is locked, merged and written back; its run is counted when its root arrives,
  and a run counted before is retracted and counted again when the new spans change it (a late
  child): exactly once, since the span rows that reach here are only those stored for the first time.
- The settle sweep counts the runs whose root did not come within VANE_RUN_SETTLE_SECONDS (first
  start to last end), one replica per trace (SKIP LOCKED).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.aggregator.rollup import CellId as GenerationCellId
from services.aggregator.rollup import at_levels
from services.aggregator.rollup_store import RUNS, add_to_rollups
from services.aggregator.runs import Run, RunKey, TraceFigures, TraceKey, batch_traces, retraction, run_cells
from services.aggregator.store import Conn, StoredRuns

_FIGURES = (
    "span_count, error_count, start_ns, end_ns, input_tokens, output_tokens, cost, root_start_ns, root_end_ns, "
    "project_name, app_version"
)
_COUNTED = (
    "counted_minute, counted_project_name, counted_app_version, counted_latency_ms, counted_cost, counted_error, "
    "counted_input_tokens, counted_output_tokens"
)
_FIGURE_TYPES = ("int", "int", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "text", "text")
_COUNTED_TYPES = ("bigint", "text", "text", "float8", "bigint", "bool", "bigint", "bigint")
_ARRAYS = ", ".join(f"${i}::{t}[]" for i, t in enumerate(("uuid", "bytea", *_FIGURE_TYPES, "bool", *_COUNTED_TYPES), 1))
_COLUMNS = f"project_id, trace_id, {_FIGURES}, counted, {_COUNTED}"
_INSERT = f"""
INSERT INTO trace_runs (project_id, trace_id, {_FIGURES}, counted_at, {_COUNTED})
SELECT project_id, trace_id, {_FIGURES}, CASE WHEN counted THEN now() END, {_COUNTED}
FROM unnest({_ARRAYS}) AS u({_COLUMNS})
ON CONFLICT DO NOTHING
RETURNING project_id, trace_id
"""
_LOCK = f"""
SELECT t.project_id, t.trace_id, {", ".join("t." + c.strip() for c in _FIGURES.split(","))},
       t.counted_at IS NOT NULL AS counted, {", ".join("t." + c.strip() for c in _COUNTED.split(","))}
FROM trace_runs t JOIN unnest($1::uuid[], $2::bytea[]) AS u(project_id, trace_id) USING (project_id, trace_id)
ORDER BY t.project_id, t.trace_id FOR UPDATE OF t
"""
_UPDATE = f"""
UPDATE trace_runs t SET {", ".join(f"{c.strip()} = u.{c.strip()}" for c in (_FIGURES + ", " + _COUNTED).split(","))},
    counted_at = CASE WHEN u.counted THEN coalesce(t.counted_at, now()) END
FROM unnest({_ARRAYS}) AS u({_COLUMNS})
WHERE t.project_id = u.project_id AND t.trace_id = u.trace_id
"""
_WAITING = f"""
SELECT project_id, trace_id, {_FIGURES}, false AS counted, {_COUNTED} FROM trace_runs
WHERE counted_at IS NULL AND first_seen < now() - make_interval(secs => $1)
ORDER BY first_seen LIMIT $2 FOR UPDATE SKIP LOCKED
"""


@dataclass
class RunChanges:
    """What a transaction takes out of run rollups and adds to them."""

    retracted: list[tuple[uuid.UUID, Run]] = field(default_factory=list)
    added: list[tuple[uuid.UUID, Run]] = field(default_factory=list)

    async def apply(self, conn: Conn) -> None:
        """Retractions first, then additions: a run counted again in its own cell never nets out in one
        sketch (a merge would drop bins whose count sums to zero with the rest)."""
        if self.retracted:
            cells = {cid: retraction(cell) for cid, cell in run_cells(self.retracted).items()}
            await add_to_rollups(conn, _levels(cells), RUNS)
        if self.added:
            await add_to_rollups(conn, _levels(run_cells(self.added)), RUNS)


def _levels(cells: dict[Any, Any]) -> dict[GenerationCellId, Any]:
    return at_levels(cells)  # type: ignore[arg-type]  # at_levels groups any key


def _figures(r: asyncpg.Record) -> TraceFigures:
    return TraceFigures(
        r["span_count"],
        r["error_count"],
        r["start_ns"],
        r["end_ns"],
        r["input_tokens"],
        r["output_tokens"],
        r["cost"],
        r["root_start_ns"],
        r["root_end_ns"],
        RunKey(r["project_name"], r["app_version"]),
    )


def _counted(r: asyncpg.Record) -> Run | None:
    if not r["counted"]:
        return None
    key = RunKey(r["counted_project_name"], r["counted_app_version"])
    return Run(
        r["counted_minute"],
        key,
        r["counted_latency_ms"],
        r["counted_cost"],
        r["counted_error"],
        r["counted_input_tokens"],
        r["counted_output_tokens"],
        r["counted_minute"] * 60_000_000_000,  # not kept: its minute is
    )


def _arrays(rows: Sequence[tuple[TraceKey, TraceFigures, Run | None]]) -> list[list[Any]]:
    """The statements' columns: each trace's key, figures, whether it is counted and what is."""
    columns: list[list[Any]] = [[] for _ in range(2 + 11 + 1 + 8)]
    for (project, trace), f, run in rows:
        values = [
            project,
            trace,
            f.span_count,
            f.error_count,
            f.start_ns,
            f.end_ns,
            f.input_tokens,
            f.output_tokens,
            f.cost,
            f.root_start_ns,
            f.root_end_ns,
            f.key.project_name,
            f.key.app_version,
            run is not None,
        ]
        if run is None:
            values += [None] * 8
        else:
            values += [
                run.minute,
                run.key.project_name,
                run.key.app_version,
                run.latency_ms,
                run.cost,
                run.error,
                run.input_tokens,
                run.output_tokens,
            ]
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def assemble(conn: Conn, stored: StoredRuns) -> RunChanges:
    """Add the newly stored spans to their traces; return what run rollups gain and lose by it."""
    changes = RunChanges()
    batch = batch_traces(stored.spans, stored.trace_ids, stored.keys)
    if not batch:
        return changes
    ordered = sorted(batch, key=lambda k: (k[0].int, k[1]))  # one lock order for every replica
    fresh = [(k, batch[k], batch[k].run(settled=False)) for k in ordered]
    inserted = {(r["project_id"], r["trace_id"]) for r in await conn.fetch(_INSERT, *_arrays(fresh))}
    changes.added += [(k[0], run) for k, _, run in fresh if k in inserted and run is not None]
    seen = [k for k in ordered if k not in inserted]
    if not seen:
        return changes
    rows = await conn.fetch(_LOCK, [k[0] for k in seen], [k[1] for k in seen])
    merged: list[tuple[TraceKey, TraceFigures, Run | None]] = []
    for r in rows:
        key = (r["project_id"], bytes(r["trace_id"]))
        figures = _figures(r).merge(batch[key])
        before = _counted(r)
        now = figures.run(settled=before is not None)  # counted once without a root: stays counted
        if now != before:
            if before is not None:
                changes.retracted.append((key[0], before))
            if now is not None:
                changes.added.append((key[0], now))
        merged.append((key, figures, now))
    await conn.execute(_UPDATE, *_arrays(merged))
    return changes


async def settle_waiting(conn: Conn, settle_seconds: float, limit: int = 2000) -> RunChanges:
    """Count the runs whose root has not come within the settle window (first start to last end)."""
    rows = await conn.fetch(_WAITING, settle_seconds, limit)
    changes = RunChanges()
    settled: list[tuple[TraceKey, TraceFigures, Run | None]] = []
    for r in rows:
        figures = _figures(r)
        run = figures.run(settled=True)
        settled.append(((r["project_id"], bytes(r["trace_id"])), figures, run))
        if run is not None:
            changes.added.append((r["project_id"], run))
    if settled:
        await conn.execute(_UPDATE, *_arrays(settled))
    return changes
