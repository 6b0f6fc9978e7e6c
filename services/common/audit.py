"""The audit log: who (which public key) did what to which thing of a project, kept in Postgres.

Writers call `record` inside the transaction of the change it describes where they have one, so a
change and its entry commit together; `entries` answers GET /api/v1/audit, newest first by cursor.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.common.errors import Invalid

Executor = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy

# The actions written today; the column is free text so a service can add its own.
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
PROMPT_CREATED = "prompt.version_created"
PROMPT_DELETED = "prompt.version_deleted"
LABELS_MOVED = "prompt.label_moved"  # a move, a split, a removal or a rollback: details hold from and to


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }


async def record(
    db: Executor,
    project_id: uuid.UUID,
    actor: str,
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    await db.execute(
        "INSERT INTO audit_log (project_id, actor, action, target, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
        project_id,
        actor,
        action,
        target,
        json.dumps(dict(details or {})),
    )


async def entries(
    db: Executor,
    project_id: uuid.UUID,
    *,
    limit: int = 100,
    before: int | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> list[AuditEntry]:
    """The project's entries, newest first; `before` is the id of the last entry of the previous page."""
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000")
    rows = await db.fetch(
        """SELECT id, at, actor, action, target, details FROM audit_log
           WHERE project_id = $1 AND ($2::bigint IS NULL OR id < $2)
             AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR actor = $4)
           ORDER BY id DESC LIMIT $5""",
        project_id,
        before,
        action,
        actor,
        limit,
    )
    return [AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["target"], json.loads(r["details"])) for r in rows]
