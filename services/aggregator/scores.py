"""Which generation a score counts toward: a pure decision over the spans of its trace stored so far.

- A score of a generation counts toward that generation.
- A score of another span (a chain, an agent) or of the whole trace (no span id) counts toward the
  trace's first generation (earliest start), since that is the run whose versions it judges; a
  trace with several generations is judged once, not once per generation.
- When the trace has no generation, a score of a stored span (or of a trace whose root is stored)
  is settled without rollup: it stays visible with its run. Otherwise the score waits (pending)
  and is retried whenever spans of its trace are stored, and by a sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.aggregator.rollup import RollupKey


@dataclass(frozen=True)
class TraceSpan:
    span_id: bytes
    parent_span_id: bytes
    start_ns: int
    is_generation: bool
    key: RollupKey


@dataclass(frozen=True)
class Settled:
    """The score is done waiting: `counts_toward` is the generation it adds to, or None."""

    span_id: bytes
    counts_toward: TraceSpan | None


def first_generation(spans: list[TraceSpan]) -> TraceSpan | None:
    generations = [s for s in spans if s.is_generation]
    return min(generations, key=lambda s: (s.start_ns, s.span_id)) if generations else None


def settle(span_id: bytes, spans: list[TraceSpan]) -> Settled | None:
    """Where a score of `span_id` (b"" for the whole trace) goes, or None while it must wait."""
    if span_id:
        named = next((s for s in spans if s.span_id == span_id), None)
        if named is None:
            return None
        if named.is_generation:
            return Settled(span_id, named)
        anchor = first_generation(spans)
        return Settled(anchor.span_id if anchor else span_id, anchor)
    anchor = first_generation(spans)
    if anchor is not None:
        return Settled(anchor.span_id, anchor)
    root = next((s for s in spans if not s.parent_span_id), None)
    return Settled(root.span_id, None) if root is not None else None
