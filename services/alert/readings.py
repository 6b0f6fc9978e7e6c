"""What a rule's scope shows over a window of minutes, read from the aggregator's rollups.

The aggregator's own readers do the work: `rollup_rows.read` (the covered blocks' rows, through a
block cache of this process's own), `version_merge.summarise_blobs` (the merged sketches' counts,
sums and quantiles) and, for a change condition's test, `arms.binned` over `sketches.merge`. All the
scope's rows merge into one cell: a rule watches one series, whatever versions its scope spans.
A round reads all of a project's rows over a window once (`ProjectRows`), and each rule's scope
picks its rows from them, so 10,000 rules over 1,000 versions cost a few reads, not 10,000.
Run metrics come from run rollups (runs are per app version, with no prompt or model).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from asyncpg import Record

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
SELECT r.project_name, r.app_version, r.run_count, r.error_count, r.cost, r.sketches
FROM run_rollups r
JOIN unnest($2::int[], $3::bigint[]) AS b(w, k) ON r.width_minutes = b.w AND r.bucket = b.k
WHERE r.project_id = $1
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


class ProjectRows:
    """Every rollup row of a project over one window with its sketches, indexed for scopes: a round
    reads each (project, window) once, whatever the number of rules and versions watching it."""

    def __init__(self, pairs: list[tuple[Record, bytes]]) -> None:
        self.pairs = pairs
        self.by_app_version: dict[str, list[tuple[Record, bytes]]] = defaultdict(list)
        self.by_prompt: dict[str, list[tuple[Record, bytes]]] = defaultdict(list)
        for pair in pairs:
            self.by_app_version[pair[0]["app_version"]].append(pair)
            self.by_prompt[pair[0]["prompt_name"]].append(pair)

    def select(self, scope: RuleScope, keep: Keep) -> list[tuple[Record, bytes]]:
        if scope.app_version is not None:
            candidates = self.by_app_version.get(scope.app_version, [])
        elif scope.prompt is not None:
            candidates = self.by_prompt.get(scope.prompt, [])
        else:
            candidates = self.pairs
        return [(r, b) for r, b in candidates if _in_scope(r, scope, keep)]


def _in_scope(r: Record, scope: RuleScope, keep: Keep) -> bool:
    return (
        (scope.app_version is None or r["app_version"] == scope.app_version)
        and (scope.prompt is None or r["prompt_name"] == scope.prompt)
        and (scope.prompt_version is None or r["prompt_version"] == scope.prompt_version)
        and (scope.model is None or r["model"] == scope.model)
        and (scope.project_name is None or r["project_name"] == scope.project_name)
        and (keep is None or keep(r["prompt_name"], r["prompt_version"]))
    )


class Reader:
    """Reads windows for rules, with a block cache kept across evaluation rounds; `forget()` starts a
    round (rows and labels read within one round are read once)."""

    def __init__(self) -> None:
        self.cache = BlockCache.create()
        self._rows: dict[tuple[uuid.UUID, int, int], ProjectRows] = {}
        self._runs: dict[tuple[uuid.UUID, int, int], list[Record]] = {}
        self._labels: dict[tuple[uuid.UUID, str | None], Keep] = {}

    def forget(self) -> None:
        self._rows.clear()
        self._runs.clear()
        self._labels.clear()

    async def _project_rows(self, conn: Conn, project: uuid.UUID, start: int, end: int) -> ProjectRows:
        key = (project, start, end)
        if key not in self._rows:
            scope = rollup_rows.Scope(project, "app_version", None, None, None)
            wanted: Callable[[object, rollup_rows.Version], bool] = lambda _g, _v: True  # noqa: E731
            found = await rollup_rows.read(conn, self.cache, scope, rollup.cover(start, end), None, wanted)
            pairs = [pair for g, v in found.versions.items() for pair in zip(v.rows, found.blobs[g], strict=True)]
            self._rows[key] = ProjectRows(pairs)
        return self._rows[key]

    async def _label_keep(self, conn: Conn, project: uuid.UUID, label: str | None) -> Keep:
        if (project, label) not in self._labels:
            self._labels[(project, label)] = await query.label_keep(conn, project, label)
        return self._labels[(project, label)]

    async def generations(self, conn: Conn, project: uuid.UUID, scope: RuleScope, start: int, end: int) -> Window:
        if start >= end:
            return Window()
        rows = await self._project_rows(conn, project, start, end)
        picked = rows.select(scope, await self._label_keep(conn, project, scope.label))
        if not picked:
            return Window()
        cell = query.counters([r for r, _ in picked])
        blobs = [b for _, b in picked]
        summaries = summarise_blobs([blobs]).summaries[0]
        return Window(cell.generations, cell.errors, cell.input_tokens, cell.output_tokens, cell.cost, summaries, blobs)

    async def runs(self, conn: Conn, project: uuid.UUID, scope: RuleScope, start: int, end: int) -> Window:
        if start >= end:
            return Window()
        key = (project, start, end)
        if key not in self._runs:
            blocks = rollup.cover(start, end)
            self._runs[key] = await conn.fetch(_RUN_ROWS, project, [b[0] for b in blocks], [b[1] for b in blocks])
        rows = [
            r
            for r in self._runs[key]
            if (scope.project_name is None or r["project_name"] == scope.project_name)
            and (scope.app_version is None or r["app_version"] == scope.app_version)
        ]
        blobs = [r["sketches"] for r in rows]
        summaries = summarise_blobs([blobs]).summaries[0] if blobs else {}
        return Window(
            count=sum(r["run_count"] for r in rows),
            errors=sum(r["error_count"] for r in rows),
            cost=sum((r["cost"] for r in rows), Decimal(0)),
            summaries=summaries,
            blobs=blobs,
        )
