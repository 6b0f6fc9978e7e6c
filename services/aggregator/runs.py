"""Runs are traces: a trace's figures from its spans, and what a run adds to (or takes from) run rollups.

Seed 000: "A run is a single execution of your application under a version. Each run contains one or
more spans." A run's latency is its root span's duration (when no root span came within the settle
window, its first start to its last end), its cost and tokens the sums over its spans, and its status
error when any span erred. It belongs to the app version of its root span (of its first stored span
until the root is stored), and counts in the minute its root (or first span) started.

Plain functions over plain data: the assembly (assembly.py) keeps each trace's figures in Postgres
and asks these what changed.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from services.aggregator.decode import HAS_COST, HAS_INPUT, HAS_OUTPUT, IS_ERROR, IS_ROOT
from services.aggregator.rollup import NS_PER_MINUTE, PICO, Cell, RollupKey, pico_of
from services.aggregator.sketches import Bins, Sketch, sketches_of_groups

RUN_LATENCY = "run_latency_ms"
RUN_COST = "run_cost"


class RunKey(NamedTuple):
    """What runs are grouped by: the app and its version."""

    project_name: str
    app_version: str


TraceKey = tuple[uuid.UUID, bytes]  # (project, trace id)


@dataclass(frozen=True)
class TraceFigures:
    """A trace's spans so far: counts and sums, extremes, its root's interval, its app version."""

    span_count: int
    error_count: int
    start_ns: int
    end_ns: int
    input_tokens: int
    output_tokens: int
    cost: int  # picodollars
    root_start_ns: int | None
    root_end_ns: int | None
    key: RunKey

    @property
    def has_root(self) -> bool:
        return self.root_start_ns is not None

    def merge(self, later: TraceFigures) -> TraceFigures:
        """These spans and `later`'s together: the root's app version wins once a root is stored."""
        root = self if self.has_root else later
        return TraceFigures(
            self.span_count + later.span_count,
            self.error_count + later.error_count,
            min(self.start_ns, later.start_ns),
            max(self.end_ns, later.end_ns),
            self.input_tokens + later.input_tokens,
            self.output_tokens + later.output_tokens,
            self.cost + later.cost,
            root.root_start_ns,
            root.root_end_ns,
            root.key if root.has_root else self.key,
        )

    def run(self, settled: bool) -> Run | None:
        """The run to count: now when the root is stored, or once `settled` (the window passed) without it."""
        if self.has_root:
            assert self.root_start_ns is not None and self.root_end_ns is not None
            start, latency_ns = self.root_start_ns, self.root_end_ns - self.root_start_ns
        elif settled:
            start, latency_ns = self.start_ns, self.end_ns - self.start_ns
        else:
            return None
        return Run(
            start // NS_PER_MINUTE,
            self.key,
            latency_ns / 1e6,
            self.cost,
            self.error_count > 0,
            self.input_tokens,
            self.output_tokens,
            start,
        )


@dataclass(frozen=True)
class Run:
    """What run rollups count of one run."""

    minute: int
    key: RunKey
    latency_ms: float
    cost: int  # picodollars
    error: bool
    input_tokens: int
    output_tokens: int
    start_ns: int = field(compare=False)  # bounds the rollup's first and last run; its minute is what counts


def batch_traces(
    spans: np.ndarray, trace_ids: bytes, keys: Sequence[tuple[uuid.UUID, RollupKey]]
) -> dict[TraceKey, TraceFigures]:
    """Each trace's figures over the span records (decode.SPAN_DTYPE) of one batch, grouped with array
    operations; `trace_ids` holds each record's 16-byte trace id, `keys` what a record's key indexes."""
    if spans.size == 0:
        return {}
    traces = np.frombuffer(trace_ids, dtype="V16")  # raw bytes: NumPy's S16 would drop trailing NULs
    numbering: dict[uuid.UUID, int] = {}
    key_project = np.array([numbering.setdefault(project, len(numbering)) for project, _ in keys], dtype=np.int64)
    projects = key_project[spans["key"]]
    order = np.lexsort((traces, projects))
    s, t, p = spans[order], traces[order], projects[order]
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (p[1:] != p[:-1])])
    flags = s["flags"]

    def total(values: np.ndarray, flag: int) -> list[int]:
        return np.add.reduceat(np.where(flags & flag != 0, values, 0), starts).tolist()

    is_root = flags & IS_ROOT != 0
    root_at = {int(np.searchsorted(starts, i, side="right") - 1): i for i in np.flatnonzero(is_root).tolist()}
    columns = zip(
        starts.tolist(),
        np.diff(np.append(starts, s.size)).tolist(),
        np.add.reduceat((flags & IS_ERROR != 0).astype(np.int64), starts).tolist(),
        np.minimum.reduceat(s["start_ns"], starts).tolist(),
        np.maximum.reduceat(s["end_ns"], starts).tolist(),
        total(s["input_tokens"], HAS_INPUT),
        total(s["output_tokens"], HAS_OUTPUT),
        total(pico_of(s["cost"]), HAS_COST),
        strict=True,
    )
    out: dict[TraceKey, TraceFigures] = {}
    for group, (first, count, errors, start, end, inputs, outputs, cost) in enumerate(columns):
        root = root_at.get(group)
        anchor = first if root is None else root
        project, rollup_key = keys[int(s["key"][anchor])]
        out[(project, bytes(t[first]))] = TraceFigures(
            count,
            errors,
            start,
            end,
            inputs,
            outputs,
            cost,
            None if root is None else int(s["start_ns"][root]),
            None if root is None else int(s["end_ns"][root]),
            RunKey(rollup_key.project_name, rollup_key.app_version),
        )
    return out


CellId = tuple[uuid.UUID, int, int, RunKey]


def run_cells(runs: Iterable[tuple[uuid.UUID, Run]]) -> dict[CellId, Cell]:
    """One-minute cells of run rollups counting these runs (`generations` counts runs)."""
    listed = list(runs)
    if not listed:
        return {}
    listed.sort(key=lambda pr: (pr[0].int, pr[1].key, pr[1].minute))
    ids = [(p, 1, r.minute, r.key) for p, r in listed]
    starts = np.flatnonzero(np.r_[True, [a != b for a, b in zip(ids[1:], ids[:-1], strict=True)]])
    latency = np.array([r.latency_ms for _, r in listed], dtype=np.float64)
    cost = np.array([r.cost / PICO for _, r in listed], dtype=np.float64)
    sketches = {RUN_LATENCY: sketches_of_groups(latency, starts), RUN_COST: sketches_of_groups(cost, starts)}
    bounds = [*starts.tolist(), len(listed)]
    cells: dict[CellId, Cell] = {}
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        group = [r for _, r in listed[a:b]]
        cells[ids[a]] = Cell(
            generations=len(group),
            errors=sum(r.error for r in group),
            input_tokens=sum(r.input_tokens for r in group),
            output_tokens=sum(r.output_tokens for r in group),
            cost=sum(r.cost for r in group),
            first_ns=min(r.start_ns for r in group),
            last_ns=max(r.start_ns for r in group),
            sketches={name: per_group[i] for name, per_group in sketches.items()},
        )
    return cells


def _negated_sketch(sketch: Sketch) -> Sketch:
    """A sketch that, added, takes `sketch`'s values back out (its extremes stay: they only bound)."""
    return Sketch(
        -sketch.count,
        -sketch.total,
        zeros=-sketch.zeros,
        positive=Bins(sketch.positive.offset, -sketch.positive.counts),
        negative=Bins(sketch.negative.offset, -sketch.negative.counts),
    )


def retraction(cell: Cell) -> Cell:
    """The cell that, added into a rollup row, takes `cell` back out of it."""
    return replace(
        cell,
        generations=-cell.generations,
        errors=-cell.errors,
        input_tokens=-cell.input_tokens,
        output_tokens=-cell.output_tokens,
        cost=-cell.cost,
        first_ns=None,
        last_ns=None,
        sketches={name: _negated_sketch(s) for name, s in cell.sketches.items()},
    )
