"""Postgres, the registry's source of truth: versions, label allocations and the label history.

Every write locks the prompt's row first, so that version numbers and label moves of one prompt
are serialised across replicas; a label move and its history row commit together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from vane.v1 import prompts_pb2 as pb

from services.common import audit
from services.common.errors import Conflict, NotFound
from services.registry.resolution import Resolution, version_message
from services.registry.rules import LATEST, NewVersion

Allocation = tuple[tuple[int, int], ...]  # (version, weight), by version
Conn = asyncpg.Connection | PoolConnectionProxy

_LABELS_OF_VERSION = """coalesce((SELECT array_agg(l2.label ORDER BY l2.label) FROM prompt_labels l2
    WHERE l2.project_id = v.project_id AND l2.name = v.name AND l2.version = v.version), '{}') AS labels"""
_VERSION_COLUMNS = f"""v.name, v.version, v.type, v.prompt::text AS prompt, v.config::text AS config, v.tags,
    v.variables, v.commit_message, v.created_at, {_LABELS_OF_VERSION}"""


@dataclass(frozen=True)
class LabelMove:
    label: str
    before: Allocation
    after: Allocation


def main_version(allocation: Allocation) -> int | None:
    """The version a label mostly serves: the heaviest, the newest among equals."""
    return max(allocation, key=lambda vw: (vw[1], vw[0]))[0] if allocation else None


def _split_json(allocation: Allocation) -> str:
    return json.dumps([{"version": v, "weight": w} for v, w in allocation])


async def _lock_prompt(conn: Conn, project: uuid.UUID, name: str) -> int:
    last = await conn.fetchval(
        "SELECT last_version FROM prompts WHERE project_id = $1 AND name = $2 FOR UPDATE", project, name
    )
    if last is None:
        raise NotFound(f"prompt {name!r} not found")
    return int(last)


async def _allocation(conn: Conn, project: uuid.UUID, name: str, label: str) -> Allocation:
    rows = await conn.fetch(
        "SELECT version, weight FROM prompt_labels WHERE project_id = $1 AND name = $2 AND label = $3 ORDER BY version",
        project,
        name,
        label,
    )
    return tuple((r["version"], r["weight"]) for r in rows)


async def _existing_versions(conn: Conn, project: uuid.UUID, name: str, versions: Sequence[int]) -> set[int]:
    rows = await conn.fetch(
        "SELECT version FROM prompt_versions WHERE project_id = $1 AND name = $2 AND version = ANY($3::int[])",
        project,
        name,
        list(versions),
    )
    return {r["version"] for r in rows}


async def _move(conn: Conn, project: uuid.UUID, name: str, label: str, after: Allocation, by: str) -> LabelMove | None:
    """Point a label at `after` (empty: take it away) and record the move; None when nothing changes."""
    before = await _allocation(conn, project, name, label)
    if before == after:
        return None
    await conn.execute(
        "DELETE FROM prompt_labels WHERE project_id = $1 AND name = $2 AND label = $3", project, name, label
    )
    await conn.executemany(
        "INSERT INTO prompt_labels (project_id, name, label, version, weight) VALUES ($1, $2, $3, $4, $5)",
        [(project, name, label, v, w) for v, w in after],
    )
    await conn.execute(
        """INSERT INTO prompt_label_history
               (project_id, name, label, from_version, to_version, from_split, to_split, moved_by)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)""",
        project,
        name,
        label,
        main_version(before),
        main_version(after),
        _split_json(before),
        _split_json(after),
        by,
    )
    if label != LATEST:  # `latest` follows every new version: the version's own entry says it
        details = {"label": label, "from": json.loads(_split_json(before)), "to": json.loads(_split_json(after))}
        await audit.record(conn, project, by, audit.LABELS_MOVED, name, details)
    return LabelMove(label, before, after)


async def create_version(
    pool: asyncpg.Pool, project: uuid.UUID, new: NewVersion, by: str
) -> tuple[int, list[LabelMove]]:
    """Store the next version of a prompt (creating the prompt if new) and move its labels and `latest` onto it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO prompts (project_id, name, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            project,
            new.name,
            new.type,
        )
        version = await _lock_prompt(conn, project, new.name) + 1
        await conn.execute(
            "UPDATE prompts SET last_version = $3, type = $4 WHERE project_id = $1 AND name = $2",
            project,
            new.name,
            version,
            new.type,
        )
        await conn.execute(
            """INSERT INTO prompt_versions
                   (project_id, name, version, type, prompt, config, tags, variables, commit_message, created_by)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10)""",
            project,
            new.name,
            version,
            new.type,
            json.dumps(new.prompt),
            json.dumps(new.config),
            list(new.tags),
            new.variables,
            new.commit_message,
            by,
        )
        await audit.record(conn, project, by, audit.PROMPT_CREATED, new.name, {"version": version})
        moves = [await _move(conn, project, new.name, label, ((version, 100),), by) for label in (*new.labels, LATEST)]
    return version, [m for m in moves if m is not None]


async def set_labels(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, version: int, labels: Sequence[str], by: str
) -> list[LabelMove]:
    """Move each label onto this one version (ending any split it was part of)."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_prompt(conn, project, name)
        if not await _existing_versions(conn, project, name, [version]):
            raise NotFound(f"prompt {name!r} has no version {version}")
        moves = [await _move(conn, project, name, label, ((version, 100),), by) for label in labels]
    return [m for m in moves if m is not None]


async def set_split(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, label: str, split: Allocation, by: str
) -> LabelMove | None:
    """Point a label at several versions with weights."""
    async with pool.acquire() as conn, conn.transaction():
        return await split_label(conn, project, name, label, split, by)


async def split_label(
    conn: Conn, project: uuid.UUID, name: str, label: str, split: Allocation, by: str
) -> LabelMove | None:
    """As set_split, inside the caller's transaction (a rollout's step commits with its label move)."""
    await _lock_prompt(conn, project, name)
    missing = {v for v, _ in split} - await _existing_versions(conn, project, name, [v for v, _ in split])
    if missing:
        raise NotFound(f"prompt {name!r} has no version {', '.join(map(str, sorted(missing)))}")
    return await _move(conn, project, name, label, split, by)


async def locked_allocation(conn: Conn, project: uuid.UUID, name: str, label: str) -> Allocation:
    """A label's allocation now, with the prompt locked until the caller's transaction ends."""
    await _lock_prompt(conn, project, name)
    return await _allocation(conn, project, name, label)


async def remove_label(pool: asyncpg.Pool, project: uuid.UUID, name: str, label: str, by: str) -> LabelMove:
    async with pool.acquire() as conn, conn.transaction():
        await _lock_prompt(conn, project, name)
        move = await _move(conn, project, name, label, (), by)
    if move is None:
        raise NotFound(f"prompt {name!r} has no label {label!r}")
    return move


async def rollback(pool: asyncpg.Pool, project: uuid.UUID, name: str, label: str, by: str) -> LabelMove:
    """Move a label back to where its last move took it from."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_prompt(conn, project, name)
        row = await conn.fetchrow(
            """SELECT from_split::text AS from_split FROM prompt_label_history
               WHERE project_id = $1 AND name = $2 AND label = $3 ORDER BY id DESC LIMIT 1""",
            project,
            name,
            label,
        )
        if row is None:
            raise NotFound(f"prompt {name!r} has no label {label!r}")
        earlier = [(int(x["version"]), int(x["weight"])) for x in json.loads(row["from_split"])]
        alive = await _existing_versions(conn, project, name, [v for v, _ in earlier])
        target = tuple(sorted((v, w) for v, w in earlier if v in alive))
        if not target:
            raise Conflict(f"label {label!r} of prompt {name!r} has no earlier version to go back to")
        move = await _move(conn, project, name, label, target, by)
    if move is None:
        raise Conflict(f"label {label!r} of prompt {name!r} is already where it was before")
    return move


async def delete_version(pool: asyncpg.Pool, project: uuid.UUID, name: str, version: int, by: str) -> list[LabelMove]:
    """Remove a version: its labels leave it (a split keeps its other versions), `latest` goes to
    the newest remaining version, and its number is never given again."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_prompt(conn, project, name)
        if not await _existing_versions(conn, project, name, [version]):
            raise NotFound(f"prompt {name!r} has no version {version}")
        labels = await conn.fetch(
            "SELECT DISTINCT label FROM prompt_labels WHERE project_id = $1 AND name = $2 AND version = $3",
            project,
            name,
            version,
        )
        moves = []
        for row in labels:
            label = row["label"]
            if label == LATEST:
                newest = await conn.fetchval(
                    "SELECT max(version) FROM prompt_versions WHERE project_id = $1 AND name = $2 AND version <> $3",
                    project,
                    name,
                    version,
                )
                after: Allocation = ((newest, 100),) if newest is not None else ()
            else:
                after = tuple(vw for vw in await _allocation(conn, project, name, label) if vw[0] != version)
            moves.append(await _move(conn, project, name, label, after, by))
        await conn.execute(
            "DELETE FROM prompt_versions WHERE project_id = $1 AND name = $2 AND version = $3", project, name, version
        )
        await audit.record(conn, project, by, audit.PROMPT_DELETED, name, {"version": version})
    return [m for m in moves if m is not None]


async def fetch_resolution(
    pool: asyncpg.Pool, project: uuid.UUID, name: str, label: str | None, version: int | None
) -> Resolution | None:
    """What a label or a version number resolves to now, or None."""
    if version:
        rows = await pool.fetch(
            f"SELECT 100 AS weight, {_VERSION_COLUMNS} FROM prompt_versions v "
            "WHERE v.project_id = $1 AND v.name = $2 AND v.version = $3",
            project,
            name,
            version,
        )
    else:
        rows = await pool.fetch(
            f"""SELECT l.weight, {_VERSION_COLUMNS} FROM prompt_labels l
                JOIN prompt_versions v ON v.project_id = l.project_id AND v.name = l.name AND v.version = l.version
                WHERE l.project_id = $1 AND l.name = $2 AND l.label = $3""",
            project,
            name,
            label,
        )
    if not rows:
        return None
    return Resolution(name, label or "", [(version_message(r, r["labels"]), r["weight"]) for r in rows])


async def list_versions(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> list[pb.PromptVersion]:
    rows = await pool.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM prompt_versions v WHERE v.project_id = $1 AND v.name = $2 "
        "ORDER BY v.version DESC",
        project,
        name,
    )
    return [version_message(r, r["labels"]) for r in rows]


async def list_prompts(pool: asyncpg.Pool, project: uuid.UUID) -> list[tuple[str, str, list[pb.PromptVersion]]]:
    """Every prompt of the project with its versions, newest first; prompts without versions are left out."""
    rows = await pool.fetch(
        f"""SELECT p.type AS prompt_type, {_VERSION_COLUMNS} FROM prompts p
            JOIN prompt_versions v ON v.project_id = p.project_id AND v.name = p.name
            WHERE p.project_id = $1 ORDER BY p.name, v.version DESC""",
        project,
    )
    out: dict[str, tuple[str, str, list[pb.PromptVersion]]] = {}
    for r in rows:
        out.setdefault(r["name"], (r["name"], r["prompt_type"], []))[2].append(version_message(r, r["labels"]))
    return list(out.values())


async def allocations(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> dict[str, list[dict[str, int]]]:
    rows = await pool.fetch(
        "SELECT label, version, weight FROM prompt_labels WHERE project_id = $1 AND name = $2 ORDER BY label, version",
        project,
        name,
    )
    out: dict[str, list[dict[str, int]]] = {}
    for r in rows:
        out.setdefault(r["label"], []).append({"version": r["version"], "weight": r["weight"]})
    return out


async def label_history(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT label, from_version, to_version, from_split::text AS from_split, to_split::text AS to_split,
                  moved_by, moved_at
           FROM prompt_label_history WHERE project_id = $1 AND name = $2 ORDER BY id""",
        project,
        name,
    )
    return [
        {
            "label": r["label"],
            "from_version": r["from_version"],
            "to_version": r["to_version"],
            "from_split": json.loads(r["from_split"]),
            "to_split": json.loads(r["to_split"]),
            "moved_at": r["moved_at"].isoformat().replace("+00:00", "Z"),
            "moved_by": r["moved_by"],
        }
        for r in rows
    ]


async def prompt_exists(pool: asyncpg.Pool, project: uuid.UUID, name: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM prompts WHERE project_id = $1 AND name = $2", project, name))


async def public_key_of(pool: asyncpg.Pool, secret_hash: str) -> str:
    return str(await pool.fetchval("SELECT public_key FROM api_keys WHERE secret_hash = $1", secret_hash) or "")
