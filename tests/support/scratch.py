"""A run's own place on the shared servers, made and removed: a database, a NATS namespace and
the Redis keys under that namespace.

The test fixtures (tests/conftest.py) and every benchmark use these, so that no run leaves a
database or a stream's reserved bytes behind on the machine's Postgres and NATS.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common import db
from services.common.auth import KeyPair, create_project


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def migrated_project(database_url: str, name: str) -> tuple[uuid.UUID, KeyPair]:
    """Create and migrate the database if need be, and make one project in it."""
    await db.migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        return await create_project(conn, name)
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    """Drop the database `database_url` names, closing whatever is still connected to it."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(with_database(database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_streams(nats_url: str, namespace: str) -> None:
    """Delete every stream of `namespace` and of the namespaces derived from it (their names start with it)."""
    import nats

    prefix = namespace.upper()
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


async def delete_redis_keys(redis_url: str, namespace: str) -> None:
    """Delete the keys the services cached under `namespace` (and the namespaces derived from it)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{namespace}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
