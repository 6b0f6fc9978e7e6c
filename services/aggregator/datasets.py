"""Datasets: items (versioned: an edit adds a version), items made from stored runs, and the runs of
each app version over a dataset with their aggregate scores."""

from __future__ import annotations

import json
import secrets
import statistics
import uuid
from typing import Any

import asyncpg
import msgspec

from services.aggregator.store import Conn
from services.aggregator.traces import parse_trace_id
from services.common.errors import Conflict, Invalid, NotFound

MAX_ITEMS_PER_CALL = 10_000


class DatasetIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    input: Any
    id: str | None = None
    expected_output: Any = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class FromRuns(msgspec.Struct, forbid_unknown_fields=True):
    trace_ids: list[str]


class FromRunsIn(msgspec.Struct, forbid_unknown_fields=True):
    from_runs: FromRuns


async def create(pool: asyncpg.Pool, project: uuid.UUID, body: DatasetIn) -> dict[str, Any]:
    name = body.name.strip()
    if not name or "/" in name:
        raise Invalid("name must be non-empty and hold no '/'")
    try:
        row = await pool.fetchrow(
            "INSERT INTO datasets (project_id, name, description) VALUES ($1, $2, $3) RETURNING *",
            project,
            name,
            body.description,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a dataset named {name!r} exists already") from None
    assert row is not None
    return _dataset(row, 0)


def _dataset(row: asyncpg.Record, items: int) -> dict[str, Any]:
    return {
        "name": row["name"],
        "description": row["description"],
        "items": items,
        "created_at": row["created_at"].isoformat(),
    }


async def list_all(pool: asyncpg.Pool, project: uuid.UUID) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT d.*, (SELECT count(DISTINCT i.id) FROM dataset_items i WHERE i.project_id = d.project_id "
        "AND i.dataset = d.name) AS items FROM datasets d WHERE d.project_id = $1 ORDER BY d.name",
        project,
    )
    return {"datasets": [_dataset(r, r["items"]) for r in rows]}


async def _exists(conn: Conn, project: uuid.UUID, name: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM datasets WHERE project_id = $1 AND name = $2", project, name):
        raise NotFound(f"no dataset {name!r}")


def parse_items(raw: bytes) -> list[ItemIn] | FromRunsIn:
    try:
        parsed = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None
    try:
        if isinstance(parsed, dict) and "from_runs" in parsed:
            return msgspec.convert(parsed, FromRunsIn)
        items = msgspec.convert(parsed if isinstance(parsed, list) else [parsed], list[ItemIn])
    except msgspec.ValidationError as exc:
        raise Invalid(f'send a list of {{"input", "id"?, "expected_output"?, "metadata"?}}: {exc}') from None
    if not items or len(items) > MAX_ITEMS_PER_CALL:
        raise Invalid(f"send 1 to {MAX_ITEMS_PER_CALL} items per call")
    return items


async def add_items(pool: asyncpg.Pool, project: uuid.UUID, name: str, body: list[ItemIn] | FromRunsIn) -> dict:
    """Each item stored as a new version of its id (version 1 for a new id); an item equal to its
    latest version is not stored again."""
    async with pool.acquire() as conn, conn.transaction():
        await _exists(conn, project, name)
        if isinstance(body, FromRunsIn):
            items = await _items_of_runs(conn, project, body.from_runs.trace_ids)
        else:
            items = [(i.id or secrets.token_hex(8), i.input, i.expected_output, i.metadata, None) for i in body]
        ids = [i[0] for i in items]
        if len(set(ids)) != len(ids):
            raise Invalid("two items of one call share an id")
        latest = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT DISTINCT ON (id) id, version, input, expected_output, metadata FROM dataset_items "
                "WHERE project_id = $1 AND dataset = $2 AND id = ANY($3::text[]) ORDER BY id, version DESC",
                project,
                name,
                ids,
            )
        }
        out = []
        new: list[tuple[Any, ...]] = []
        for item_id, value, expected, metadata, source in items:
            held = latest.get(item_id)
            if held is not None and _same(held, value, expected, metadata):
                out.append({"id": item_id, "version": held["version"]})
                continue
            version = held["version"] + 1 if held is not None else 1
            encoded = (json.dumps(value), None if expected is None else json.dumps(expected), json.dumps(metadata))
            new.append((project, name, item_id, version, *encoded, source))
            out.append({"id": item_id, "version": version})
        # one pipelined statement for the call's items, not a round trip each
        await conn.executemany(
            "INSERT INTO dataset_items (project_id, dataset, id, version, input, expected_output, metadata, "
            "source_trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            new,
        )
    return {"items": out}


def _same(held: asyncpg.Record, value: Any, expected: Any, metadata: dict[str, Any]) -> bool:
    stored = (json.loads(held["input"]), _loads(held["expected_output"]), json.loads(held["metadata"]))
    return stored == (value, expected, metadata)


def _loads(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


async def _items_of_runs(conn: Conn, project: uuid.UUID, trace_ids: list[str]) -> list[tuple]:
    """An item per stored trace: its root span's input, and its output as the expected output."""
    if not trace_ids:
        raise Invalid("from_runs.trace_ids is empty")
    traces = [parse_trace_id(t) for t in trace_ids]
    rows = await conn.fetch(
        "SELECT DISTINCT ON (trace_id) trace_id, input, output, name FROM runs "
        "WHERE project_id = $1 AND trace_id = ANY($2::bytea[]) ORDER BY trace_id, (parent_span_id = '') DESC, start_ns",
        project,
        traces,
    )
    found = {r["trace_id"]: r for r in rows}
    missing = [t.hex() for t in traces if t not in found]
    if missing:
        raise NotFound(f"no stored run of trace {', '.join(missing)}")
    return [
        (t.hex(), _maybe_json(found[t]["input"]), _maybe_json(found[t]["output"]) or None, {"from_trace": t.hex()}, t)
        for t in traces
    ]


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


async def list_items(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, not_run_by: str | None = None
) -> dict[str, Any]:
    """Each item at its latest version; with `not_run_by`, only those that app version has not run
    (at that version): what a resumed run has left to do."""
    async with pool.acquire() as conn:
        await _exists(conn, project, name)
        rows = await conn.fetch(
            "SELECT DISTINCT ON (i.id) i.* FROM dataset_items i WHERE i.project_id = $1 AND i.dataset = $2 "
            "ORDER BY i.id, i.version DESC",
            project,
            name,
        )
        done: set[tuple[str, int]] = set()
        if not_run_by is not None:
            done = {
                (r["item_id"], r["item_version"])
                for r in await conn.fetch(
                    "SELECT item_id, item_version FROM dataset_runs WHERE project_id = $1 AND dataset = $2 "
                    "AND app_version = $3",
                    project,
                    name,
                    not_run_by,
                )
            }
    return {
        "items": [
            {
                "id": r["id"],
                "version": r["version"],
                "input": json.loads(r["input"]),
                "expected_output": _loads(r["expected_output"]),
                "metadata": json.loads(r["metadata"]),
                "source_trace_id": r["source_trace_id"].hex() if r["source_trace_id"] else None,
            }
            for r in rows
            if (r["id"], r["version"]) not in done
        ]
    }


_RUN_SCORES = """
SELECT d.app_version, d.item_id, s.name, s.value
FROM dataset_runs d JOIN scores s ON s.project_id = d.project_id AND s.trace_id = d.trace_id
 AND (s.span_id = '' OR s.span_id = d.span_id)
WHERE d.project_id = $1 AND d.dataset = $2 AND NOT s.is_error AND s.data_type <> 3
"""


async def runs(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> dict[str, Any]:
    """Each app version's run over the dataset: items run, the dataset versions used, and each score's
    count, mean and median."""
    async with pool.acquire() as conn:
        await _exists(conn, project, name)
        runs_of = await conn.fetch(
            "SELECT app_version, count(DISTINCT item_id) AS items, min(start_time) AS first, max(start_time) AS last, "
            "array_agg(DISTINCT item_id || ':' || item_version) AS pinned FROM dataset_runs "
            "WHERE project_id = $1 AND dataset = $2 GROUP BY app_version ORDER BY min(start_time)",
            project,
            name,
        )
        score_rows = await conn.fetch(_RUN_SCORES, project, name)
    values: dict[str, dict[str, list[float]]] = {}
    for r in score_rows:
        values.setdefault(r["app_version"], {}).setdefault(r["name"], []).append(r["value"])
    return {
        "runs": [
            {
                "version_name": r["app_version"],
                # the newest item version the run used (1 until an item was edited), and each item's
                "dataset_version": max(_item_versions(r["pinned"]).values(), default=1),
                "item_versions": _item_versions(r["pinned"]),
                "items": r["items"],
                "first_run_at": r["first"].isoformat(),
                "last_run_at": r["last"].isoformat(),
                "scores": {
                    score: {"count": len(v), "mean": statistics.fmean(v), "median": statistics.median(v)}
                    for score, v in sorted(values.get(r["app_version"], {}).items())
                },
            }
            for r in runs_of
        ]
    }


def _item_versions(pinned: list[str]) -> dict[str, int]:
    """The item versions a run used, by item id (an item run at two versions: the later)."""
    out: dict[str, int] = {}
    for entry in pinned:
        item, _, version = entry.rpartition(":")
        out[item] = max(out.get(item, 0), int(version))
    return out
