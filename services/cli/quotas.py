"""`vane quotas`: an operator's per-project limits (spans a second, bytes a day, judge calls a
second), written to Postgres; every replica follows within seconds."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import click

from services.common import db
from services.common.quotas import Limits, set_limits
from services.common.settings import Settings

_OPTIONS = (
    ("spans_per_second", "--spans-per-second"),
    ("bytes_per_day", "--bytes-per-day"),
    ("judge_calls_per_second", "--judge-calls-per-second"),
)


async def _project_id(conn: asyncpg.Connection, name: str) -> Any:
    await db.check_schema(conn)
    project = await conn.fetchval("SELECT id FROM projects WHERE name = $1", name)
    if project is None:
        raise click.ClickException(f"no project named {name!r}")
    return project


def _run(work: Any) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(Settings.from_env().database_url)
        try:
            await work(conn)
        except db.SchemaMismatch as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await conn.close()

    asyncio.run(run())


@click.group("quotas")
def quotas() -> None:
    """Per-project quotas (0 is unlimited; `default` follows the environment's defaults)."""


@quotas.command("set")
@click.argument("project")
@click.option("--spans-per-second", help="spans a second at ingest, or default")
@click.option("--bytes-per-day", help="request bytes a day at ingest, or default")
@click.option("--judge-calls-per-second", help="LLM judge calls a second across evaluators, or default")
def quotas_set(project: str, **given: str | None) -> None:
    """Set a project's limits."""
    limits: dict[str, int | None] = {}
    for field, flag in _OPTIONS:
        value = given.get(field)
        if value is None:
            continue
        if value != "default" and not value.isdigit():
            raise click.BadParameter(f"{flag} takes a whole number or 'default'")
        limits[field] = None if value == "default" else int(value)
    if not limits:
        raise click.UsageError("give at least one limit")

    async def work(conn: asyncpg.Connection) -> None:
        project_id = await _project_id(conn, project)
        async with conn.transaction():
            await set_limits(conn, project_id, **limits)
        await show(conn, project, project_id)

    _run(work)


@quotas.command("show")
@click.argument("project")
def quotas_show(project: str) -> None:
    """A project's limits in force."""

    async def work(conn: asyncpg.Connection) -> None:
        await show(conn, project, await _project_id(conn, project))

    _run(work)


async def show(conn: asyncpg.Connection, name: str, project_id: Any) -> None:
    row = await conn.fetchrow("SELECT * FROM project_quotas WHERE project_id = $1", project_id)
    defaults = Limits.from_env()
    click.echo(f"project: {name}")
    for field, _ in _OPTIONS:
        own = row[field] if row is not None else None
        value = getattr(defaults, field) if own is None else own
        source = "default" if own is None else "set"
        click.echo(f"{field}: {value or 'unlimited'} ({source})")
