"""Postgres: one asyncpg pool per process, and ordered SQL migrations with a schema version table.

Migrations are files `NNNN_name.sql` in services/common/migrations, applied in order, each in its
own transaction, under an advisory lock so that replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common.logs import get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x7661_6E65  # "vane": the advisory lock that serialises migrations

log = get_logger(component="db")


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this build knows: older (migrate) or newer (upgrade)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


def latest_known_version() -> int:
    return max((m.version for m in known_migrations()), default=0)


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist (the server must answer)."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "postgres"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("database_created", database=name)
            except asyncpg.DuplicateDatabaseError:
                pass  # another process made it first
    finally:
        await conn.close()


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    table = await conn.fetchval("SELECT to_regclass('vane_schema_version')")
    if table is None:
        return set()
    return {int(v) for v in await conn.fetchval("SELECT coalesce(array_agg(version), '{}') FROM vane_schema_version")}


async def schema_version(conn: asyncpg.Connection) -> int:
    return max(await applied_versions(conn), default=0)


async def migrate(database_url: str) -> list[int]:
    """Apply every migration the database lacks; return the versions applied."""
    await ensure_database(database_url)
    migrations = known_migrations()
    conn = await asyncpg.connect(database_url)
    applied: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS vane_schema_version (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            applied_before = await applied_versions(conn)
            unknown = applied_before - {m.version for m in migrations}
            if unknown:
                raise SchemaMismatch(
                    f"the database schema has migrations {sorted(unknown)} that this build does not know "
                    f"(it knows up to {latest_known_version()}): upgrade Vane before migrating"
                )
            for migration in migrations:
                if migration.version in applied_before:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO vane_schema_version (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                applied.append(migration.version)
                log.info("migration_applied", version=migration.version, name=migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied


async def check_schema(conn: asyncpg.Connection) -> None:
    """Refuse to run on a schema this build does not know, saying which way it is off."""
    current = await schema_version(conn)
    expected = latest_known_version()
    if current < expected:
        raise SchemaMismatch(
            f"the database schema is at version {current} but this build needs {expected}: run `vane migrate` first"
        )
    if current > expected:
        raise SchemaMismatch(
            f"the database schema is at version {current}, newer than this build knows ({expected}): "
            "upgrade Vane or point it at another database"
        )


async def create_pool(database_url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(database_url, min_size=min_size, max_size=max_size, command_timeout=30)
    assert pool is not None
    return pool


async def connect_with_retry(database_url: str, deadline_seconds: float = 30.0) -> asyncpg.Connection:
    """Connect, retrying while Postgres is starting; raise the last error at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_seconds
    delay = 0.2
    while True:
        try:
            return await asyncpg.connect(database_url, timeout=5)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if isinstance(exc, asyncpg.InvalidCatalogNameError) or loop.time() + delay > end:
                raise
            log.warning("postgres_not_ready", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
