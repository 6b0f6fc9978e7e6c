"""Versions as the statistics see them: each version's metrics as binned samples, counts and categories.

Read from the rollups the metrics queries read (rollup_rows, through the same block cache), merged
into one sketch per metric per version; a sketch's bins are a binned sample (each bin's
representative value, clipped to the exact extremes) and a score's exact table is its sample as is.
Runs' figures (app versions) come from run rollups.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.aggregator import query, rollup, rollup_rows
from services.aggregator.query import CACHE, Filters
from services.aggregator.rollup import sketches_from_blob
from services.aggregator.rollup_rows import Keep, Scope
from services.aggregator.runs import RUN_COST, RUN_LATENCY
from services.aggregator.sketches import Sketch, merge, values_of
from services.aggregator.store import Conn
from services.common.statistics import BinnedSample

_RUN_ROWS = """
SELECT r.project_name, r.app_version, r.run_count, r.error_count, r.sketches
FROM run_rollups r
JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.project_name = $4)
"""


@dataclass
class VersionData:
    """One version's merged metrics over a range."""

    generations: int = 0
    errors: int = 0
    cost: float | None = None  # the exact total (dollars), where the rows were read
    sketches: dict[str, Sketch] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    runs: int = 0
    run_errors: int = 0
    run_sketches: dict[str, Sketch] = field(default_factory=dict)

    def sample(self, metric: str) -> BinnedSample | None:
        sketch = self.sketches.get(metric) or self.run_sketches.get(metric)
        return binned(sketch) if sketch is not None and sketch.count else None


def binned(sketch: Sketch) -> BinnedSample:
    """A sketch's values as a binned sample: its exact values where it keeps them, else its bins."""
    if sketch.exact is not None:
        return BinnedSample(*sketch.exact)
    pos_keys, pos_counts = sketch.positive.nonzero()
    neg_keys, neg_counts = sketch.negative.nonzero()
    values = np.concatenate([-values_of(neg_keys), np.zeros(1 if sketch.zeros else 0), values_of(pos_keys)])
    counts = np.concatenate([neg_counts, np.full(1 if sketch.zeros else 0, sketch.zeros), pos_counts])
    return BinnedSample.of(np.clip(values, sketch.low, sketch.high), counts)


def _merged(blobs: Sequence[bytes]) -> tuple[dict[str, Sketch], dict[str, dict[str, int]]]:
    parts: dict[str, list[Sketch]] = {}
    categories: dict[str, dict[str, int]] = {}
    for blob in blobs:
        sketches, _, counts = sketches_from_blob(blob)
        for name, sketch in sketches.items():
            parts.setdefault(name, []).append(sketch)
        rollup.add_categories(categories, counts)
    return {name: merge(found) for name, found in parts.items()}, categories


async def read_versions(
    conn: Conn, project: uuid.UUID, filters: Filters, prompt_name: str | None, keep: Keep, wanted: set[Hashable]
) -> dict[Hashable, VersionData]:
    """The `wanted` versions' data: prompt versions (ints) when `prompt_name` is given, else app
    versions as (project name, version name), with their runs."""
    found = await query.closed_range(conn, project, filters)
    blocks = rollup.cover(*found) if found else []
    if not blocks:
        return {}
    by = "prompt_version" if prompt_name is not None else "app_version"
    scope = Scope(project, by, prompt_name, filters.model, filters.label, filters.project_name)
    read = await rollup_rows.read(conn, CACHE, scope, blocks, keep, lambda g, _: g in wanted)
    out: dict[Hashable, VersionData] = {}
    for g, blobs in read.blobs.items():
        cell = query.counters(read.versions[g].rows)
        sketches, categories = _merged(blobs)
        out[g] = VersionData(cell.generations, cell.errors, float(cell.cost), sketches, categories)
    if prompt_name is None and filters.model is None and filters.label is None:  # runs have no model or label
        await _add_runs(conn, project, blocks, filters.project_name, wanted, out)
    return out


async def _add_runs(
    conn: Conn,
    project: uuid.UUID,
    blocks: list[tuple[int, int]],
    project_name: str | None,
    wanted: set[Hashable],
    out: dict[Hashable, VersionData],
) -> None:
    rows = await conn.fetch(_RUN_ROWS, project, [b[0] for b in blocks], [b[1] for b in blocks], project_name)
    blobs: dict[Hashable, list[bytes]] = {}
    for r in rows:
        g = (r["project_name"], r["app_version"])
        if g not in wanted:
            continue
        data = out.setdefault(g, VersionData())
        data.runs += r["run_count"]
        data.run_errors += r["error_count"]
        blobs.setdefault(g, []).append(r["sketches"])
    for app, found in blobs.items():
        sketches, _ = _merged(found)
        out[app].run_sketches = {n: s for n, s in sketches.items() if n in (RUN_LATENCY, RUN_COST)}
