"""What a rule's scope shows over a window of minutes, read from the aggregator's rollups.

The aggregator's own readers do the work: `rollup_rows.read` (the covered blocks' rows, through a
block cache of this process's own), `version_merge.summarise_blobs` (the merged sketches' counts,
sums and quantiles) and, for a change condition's test, `arms.binned` over `sketches.merge`. All the
scope's rows merge into one cell: a rule watches one series, whatever versions its scope spans.
Run metrics come from run rollups (runs are per app version, with no prompt or model).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from services.aggregator import query, rollup, rollup_rows
from services.aggregator.arms import binned
from services.aggregator.block_cache import BlockCache
from services.aggregator.rollup import sketches_from_blob
from services.aggregator.rollup_rows import Keep
from services.aggregator.sketches import merge
from services.aggregator.store import Conn
from services.aggregator.version_merge import Summary, summarise_blobs
from services.alert.rules import RuleScope
from services.common.statistics import BinnedSample

_RUN_ROWS = """
SELECT r.run_count, r.error_count, r.cost, r.sketches
FROM run_rollups r
JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1 AND ($4::text IS NULL OR r.project_name = $4) AND ($5::text IS NULL OR r.app_version = $5)
"""


@dataclass
class Window:
    """One scope's figures over [start, end) minutes: exact counters and each metric's summary."""

    count: int = 0  # generations (or runs)
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    summaries: dict[str, Summary] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)

    def sample(self, metric: str) -> BinnedSample | None:
        """The metric's merged sketch as a binned sample (for a test), or None without values."""
        parts = [s[metric] for s in (sketches_from_blob(b)[0] for b in self.blobs if b) if metric in s]
        if not parts:
            return None
        sketch = merge(parts)
        return binned(sketch) if sketch.count else None


def _keep(scope: RuleScope, labelled: Keep) -> Keep:
    if scope.prompt_version is None:
        return labelled
    version = scope.prompt_version

    def keep(name: str, v: int) -> bool:
        return v == version and (labelled is None or labelled(name, v))

    return keep


class Reader:
    """Reads windows for rules, with a block cache kept across evaluation rounds."""

    def __init__(self) -> None:
        self.cache = BlockCache.create()

    async def generations(self, conn: Conn, project: uuid.UUID, scope: RuleScope, start: int, end: int) -> Window:
        blocks = rollup.cover(start, end) if start < end else []
        if not blocks:
            return Window()
        keep = _keep(scope, await query.label_keep(conn, project, scope.label))
        read_scope = rollup_rows.Scope(
            project, "app_version", scope.prompt, scope.model, scope.label, scope.project_name, scope.app_version
        )
        wanted: Callable[[object, rollup_rows.Version], bool] = lambda _g, _v: True  # noqa: E731
        found = await rollup_rows.read(conn, self.cache, read_scope, blocks, keep, wanted)
        rows = [r for v in found.versions.values() for r in v.rows]
        blobs = [b for group in found.blobs.values() for b in group]
        cell = query.counters(rows)
        summaries = summarise_blobs([blobs]).summaries[0] if blobs else {}
        return Window(cell.generations, cell.errors, cell.input_tokens, cell.output_tokens, cell.cost, summaries, blobs)

    async def runs(self, conn: Conn, project: uuid.UUID, scope: RuleScope, start: int, end: int) -> Window:
        blocks = rollup.cover(start, end) if start < end else []
        if not blocks:
            return Window()
        rows = await conn.fetch(
            _RUN_ROWS, project, [b[0] for b in blocks], [b[1] for b in blocks], scope.project_name, scope.app_version
        )
        blobs = [r["sketches"] for r in rows]
        summaries = summarise_blobs([blobs]).summaries[0] if blobs else {}
        return Window(
            count=sum(r["run_count"] for r in rows),
            errors=sum(r["error_count"] for r in rows),
            cost=sum((r["cost"] for r in rows), Decimal(0)),
            summaries=summaries,
            blobs=blobs,
        )
