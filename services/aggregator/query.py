"""Metrics by prompt version and by app version, answered from rollups (never by scanning runs).

A range [from, to) is honoured to the minute (from rounded down, to rounded up) and covered by a
few aligned blocks per version (`rollup.cover`); their rows are merged into one cell per version
and turned into CONTRACT's ROW.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.aggregator import rollup
from services.aggregator.rollup import NS_PER_MINUTE, Cell, RollupKey
from services.aggregator.sketches import Sketch, merge_encoded_groups
from services.aggregator.store import Conn

_ROW_QUERY = """
SELECT app_version, prompt_name, prompt_version, model, generation_count, error_count, input_tokens,
       output_tokens, cost, first_ns, last_ns, sketches
FROM rollups r JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.prompt_name = $4) AND ($5::text IS NULL OR r.model = $5)
"""


@dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    label: str | None = None


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _blocks(conn: Conn, project: uuid.UUID, filters: Filters) -> list[tuple[int, int]]:
    """The aligned blocks covering the filters' range (the project's whole history by default)."""
    widest = rollup.LEVELS[-1]
    span = await conn.fetchrow(
        "SELECT min(bucket) AS first, max(bucket) AS last FROM rollups WHERE project_id = $1 AND width_minutes = $2",
        project,
        widest,
    )
    if span is None or span["first"] is None:
        return []
    start = _ns(filters.start) // NS_PER_MINUTE if filters.start else span["first"]
    end = -(-_ns(filters.end) // NS_PER_MINUTE) if filters.end else span["last"] + widest
    return rollup.cover(start, end) if start < end else []


def combine(groups: Sequence[Sequence[asyncpg.Record]]) -> list[Cell]:
    """One cell per group of rows: exact counters, and every group's sketches merged in one pass."""
    cells: list[Cell] = []
    slots: list[list[list[object]]] = []
    names: list[tuple[int, str]] = []
    for rows in groups:
        cell = Cell()
        parts: dict[str, list[list[object]]] = defaultdict(list)
        for r in rows:
            cell.generations += r["generation_count"]
            cell.errors += r["error_count"]
            cell.input_tokens += r["input_tokens"]
            cell.output_tokens += r["output_tokens"]
            cell.cost += r["cost"]
            if r["first_ns"] is not None:
                cell.first_ns = r["first_ns"] if cell.first_ns is None else min(cell.first_ns, r["first_ns"])
                cell.last_ns = r["last_ns"] if cell.last_ns is None else max(cell.last_ns, r["last_ns"])
            if r["sketches"]:
                raw = msgspec.msgpack.decode(r["sketches"])
                for name, encoded in raw["s"].items():
                    parts[name].append(encoded)
                for name, count in raw["e"].items():
                    cell.score_errors[name] = cell.score_errors.get(name, 0) + count
        for name, raws in parts.items():
            names.append((len(cells), name))
            slots.append(raws)
        cells.append(cell)
    for (index, name), sketch in zip(names, merge_encoded_groups(slots), strict=True):
        cells[index].sketches[name] = sketch
    return cells


def _score_stats(sketch: Sketch | None, errors: int) -> dict[str, Any]:
    sketch = sketch or Sketch()
    median, p05, p95 = sketch.quantiles([0.5, 0.05, 0.95])
    return {
        "count": sketch.count,
        "median": median,
        "mean": sketch.mean,
        "min": sketch.low if sketch.count else None,
        "max": sketch.high if sketch.count else None,
        "p05": p05,
        "p95": p95,
        "error_count": errors,
    }


def metrics_row(version: int | str, labels: list[str], cell: Cell) -> dict[str, Any]:
    """CONTRACT's ROW for one version's merged cell."""
    empty = Sketch()
    latency = cell.sketches.get(rollup.LATENCY, empty).quantiles([0.5, 0.95, 0.99])
    names = sorted(
        {n[len(rollup.SCORE_PREFIX) :] for n in cell.sketches if n.startswith(rollup.SCORE_PREFIX)}
        | set(cell.score_errors)
    )
    return {
        "version": version,
        "labels": labels,
        "generation_count": cell.generations,
        "median_latency_ms": latency[0],
        "p95_latency_ms": latency[1],
        "p99_latency_ms": latency[2],
        "median_ttft_ms": cell.sketches.get(rollup.TTFT, empty).quantile(0.5),
        "median_input_tokens": cell.sketches.get(rollup.INPUT_TOKENS, empty).quantile(0.5),
        "median_output_tokens": cell.sketches.get(rollup.OUTPUT_TOKENS, empty).quantile(0.5),
        "total_input_tokens": cell.input_tokens,
        "total_output_tokens": cell.output_tokens,
        "median_cost": cell.sketches.get(rollup.COST, empty).quantile(0.5),
        "total_cost": cell.cost,
        "median_score": cell.sketches.get(rollup.ALL_SCORES, empty).quantile(0.5),
        "scores": {
            n: _score_stats(cell.sketches.get(rollup.score_metric(n)), cell.score_errors.get(n, 0)) for n in names
        },
        "first_generation_at": iso(cell.first_ns),
        "last_generation_at": iso(cell.last_ns),
    }


async def _grouped(
    conn: Conn,
    project: uuid.UUID,
    filters: Filters,
    prompt_name: str | None,
    group: Callable[[RollupKey], Hashable],
    keep: Callable[[RollupKey], bool],
) -> dict[Hashable, Cell]:
    blocks = await _blocks(conn, project, filters)
    if not blocks:
        return {}
    rows = await conn.fetch(
        _ROW_QUERY, project, [b[0] for b in blocks], [b[1] for b in blocks], prompt_name, filters.model
    )
    groups: dict[Hashable, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        key = RollupKey(r["app_version"], r["prompt_name"], r["prompt_version"], r["model"])
        if keep(key):
            groups[group(key)].append(r)
    keys = list(groups)
    cells = dict(zip(keys, combine([groups[k] for k in keys]), strict=True))
    return {g: c for g, c in cells.items() if c.generations}


async def prompt_metrics(pool: asyncpg.Pool, project: uuid.UUID, name: str, filters: Filters) -> dict[str, Any]:
    """{"prompt": name, "versions": [ROW…]}, newest version first."""
    async with pool.acquire() as conn:
        labels: dict[int, list[str]] = defaultdict(list)
        for r in await conn.fetch(
            "SELECT version, label FROM prompt_labels WHERE project_id = $1 AND name = $2 ORDER BY label",
            project,
            name,
        ):
            labels[r["version"]].append(r["label"])
        labelled = {v for v, ls in labels.items() if filters.label in ls}
        cells = await _grouped(
            conn,
            project,
            filters,
            name,
            group=lambda k: k.prompt_version,
            keep=lambda k: k.prompt_version > 0 and (filters.label is None or k.prompt_version in labelled),
        )
    versions = sorted(cells, key=lambda v: -int(v))  # type: ignore[call-overload]
    return {"prompt": name, "versions": [metrics_row(int(v), labels.get(int(v), []), cells[v]) for v in versions]}  # type: ignore[call-overload]


async def version_metrics(pool: asyncpg.Pool, project: uuid.UUID, filters: Filters) -> dict[str, Any]:
    """{"versions": [ROW…]} by app version (project_version_name), by name."""
    async with pool.acquire() as conn:
        labelled: set[tuple[str, int]] = set()
        if filters.label is not None:
            rows = await conn.fetch(
                "SELECT name, version FROM prompt_labels WHERE project_id = $1 AND label = $2", project, filters.label
            )
            labelled = {(r["name"], r["version"]) for r in rows}
        cells = await _grouped(
            conn,
            project,
            filters,
            None,
            group=lambda k: k.app_version,
            keep=lambda k: filters.label is None or (k.prompt_name, k.prompt_version) in labelled,
        )
    return {"versions": [metrics_row(str(v), [], cells[v]) for v in sorted(cells, key=str)]}
