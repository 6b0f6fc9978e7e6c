"""Runs are traces, as a user reads them: traces of 1 to 20 spans, their spans shuffled across
batches, become runs whose latency is the root's duration, whose cost and tokens are their spans'
sums and whose status is error when any span erred; a child that arrives after its run was counted
changes the run once; a trace whose root never comes is counted after the settle window."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
from vane.v1 import bus_pb2

from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually, publish_spans

pytestmark = pytest.mark.slow
MS = 1_000_000


@dataclass
class Trace:
    spans: list[bus_pb2.CanonicalSpan]
    root_ms: float

    @property
    def cost(self) -> Decimal:
        return sum((Decimal(repr(s.cost)) for s in self.spans if s.HasField("cost")), Decimal(0))

    @property
    def error(self) -> bool:
        return any(s.status == bus_pb2.SPAN_STATUS_ERROR for s in self.spans)


def _trace(project: uuid.UUID, rng: np.random.Generator, start_ns: int, app_version: str, spans: int) -> Trace:
    """A root span ("agent") around retrieval, tool and LLM children; the LLM ones priced."""
    trace_id, root_id = secrets.token_bytes(16), secrets.token_bytes(8)
    root_ms = float(rng.lognormal(7.0, 0.5))
    common = {"project_id": str(project), "trace_id": trace_id, "project_name": "bot", "app_version": app_version}
    root = bus_pb2.CanonicalSpan(
        span_id=root_id,
        name="agent",
        kind="chain",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(root_ms * MS),
        **common,
    )
    children = []
    for i in range(spans - 1):
        offset = int(rng.random() * root_ms * 0.5 * MS)
        llm = i % 3 == 2
        child = bus_pb2.CanonicalSpan(
            span_id=secrets.token_bytes(8),
            parent_span_id=root_id,
            name=("retrieve", "tool", "reply")[i % 3],
            kind="llm" if llm else ("retriever", "tool")[i % 3],
            start_time_unix_nano=start_ns + offset,
            end_time_unix_nano=start_ns + offset + int(root_ms * 0.4 * MS),
            status=bus_pb2.SPAN_STATUS_ERROR if rng.random() < 0.02 else bus_pb2.SPAN_STATUS_OK,
            **common,
        )
        if llm:
            inputs, outputs = int(rng.integers(10, 2000)), int(rng.integers(1, 400))
            child.model, child.input_tokens, child.output_tokens = "gpt-4o", inputs, outputs
            child.input_cost, child.output_cost = inputs * 2.5 / 1e6, outputs * 10.0 / 1e6
            child.cost = child.input_cost + child.output_cost
        children.append(child)
    return Trace([root, *children], root_ms)


def _env(namespace: str, **more: str) -> dict[str, str]:
    return {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES), **more}


async def test_runs_of_shuffled_spans_are_counted_once_with_their_traces_figures(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    rng = np.random.default_rng(22)
    start = time.time_ns() - 2 * 3600 * 10**9
    traces = {
        version: [
            _trace(project.id, rng, start + int(rng.random() * 3600 * 10**9), version, int(rng.integers(1, 21)))
            for _ in range(150)
        ]
        for version in ("v1", "v2")
    }
    every = [span for ts in traces.values() for t in ts for span in t.spans]
    order = rng.permutation(len(every))
    shuffled = [every[i] for i in order]
    # A late child: one LLM span of each of the first traces arrives only after their runs were counted.
    late = [t.spans[-1] for t in traces["v1"][:10] if len(t.spans) > 3]
    first = [s for s in shuffled if s not in late]
    aggregator = start_service("aggregator", **_env(namespace))
    await publish_spans(bus, project.id, first, per_batch=71)
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:

        async def rows_with(runs: int) -> dict[str, dict[str, Any]] | None:
            rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            by_version = {r["version"]: r for r in rows}
            return by_version if sum(r["run_count"] or 0 for r in rows) == runs else None

        await eventually(lambda: rows_with(300), timeout=60)
        await publish_spans(bus, project.id, late, per_batch=3)

        async def all_spans_in() -> dict[str, dict[str, Any]] | None:
            rows = await rows_with(300)
            stored = sum(r["total_tokens"] for r in (rows or {}).values())
            expected = sum(s.input_tokens + s.output_tokens for s in every)
            return rows if rows and stored == expected else None

        rows = await eventually(all_spans_in, timeout=60)
        for version, ts in traces.items():
            row = rows[version]
            assert row["run_count"] == len(ts)
            assert row["run_error_rate"] == sum(t.error for t in ts) / len(ts)
            mean_cost = sum((t.cost for t in ts), Decimal(0)) / len(ts)
            assert row["mean_run_cost"] == pytest.approx(float(mean_cost), rel=1e-9)
            latencies = np.array([t.root_ms for t in ts])
            assert row["mean_run_latency_ms"] == pytest.approx(latencies.mean(), rel=1e-3)
            exact = np.sort(latencies)
            for field, q in (("median_run_latency_ms", 0.5), ("p95_run_latency_ms", 0.95)):
                expected = exact[int(q * (len(exact) - 1))]
                assert abs(row[field] - expected) <= 0.01 * expected, field
        # a run's figures are not per generation: these are one per trace, not per LLM span
        assert rows["v1"]["generation_count"] == sum(s.kind == "llm" for t in traces["v1"] for s in t.spans)

        # the runs list: one entry per trace, newest first, with the trace's own figures
        listed: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"app_version": "v1", "limit": 40, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/v1/traces", params=params)).json()
            listed.extend(page["traces"])
            if not (cursor := page["next_cursor"]):
                break
        truth = {t.spans[0].trace_id.hex(): t for t in traces["v1"]}
        assert len(listed) == 150 and {r["trace_id"] for r in listed} == set(truth)
        assert [r["start_time"] for r in listed] == sorted((r["start_time"] for r in listed), reverse=True)
        for run in listed:
            t = truth[run["trace_id"]]
            assert run["span_count"] == len(t.spans) and run["status"] == ("error" if t.error else "ok")
            assert run["cost"] == pytest.approx(float(t.cost), rel=1e-9)
            assert run["latency_ms"] == pytest.approx(t.root_ms, rel=1e-6)
        errors = (await http.get("/api/v1/traces", params={"app_version": "v1", "status": "error"})).json()
        assert len(errors["traces"]) == min(50, sum(t.error for t in traces["v1"]))
        assert (await http.get("/api/v1/traces", params={"status": "sideways"})).status_code == 400


async def test_a_trace_whose_root_never_comes_is_counted_after_the_settle_window(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    rng = np.random.default_rng(7)
    trace = _trace(project.id, rng, time.time_ns() - 600 * 10**9, "v1", 4)
    children = trace.spans[1:]
    aggregator = start_service("aggregator", **_env(namespace, VANE_RUN_SETTLE_SECONDS="1"))
    await publish_spans(bus, project.id, children)
    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=10) as http:

        async def counted() -> dict[str, Any] | None:
            rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            return rows[0] if rows and rows[0]["run_count"] == 1 else None

        row = await eventually(counted, timeout=30)
        first = min(s.start_time_unix_nano for s in children)
        last = max(s.end_time_unix_nano for s in children)
        assert row["mean_run_latency_ms"] == pytest.approx((last - first) / MS, rel=1e-3)
