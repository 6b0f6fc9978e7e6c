"""`vane`: start the stack, serve one service, migrate, and manage projects."""

from __future__ import annotations

import asyncio
import importlib

import click

from services.common import db
from services.common.settings import Settings

SERVICES = ("registry", "ingest", "evaluator", "aggregator", "alert")


@click.group()
def cli() -> None:
    """Vane: which version of your LLM app is better, with evidence."""


@cli.command()
@click.argument("service", type=click.Choice(SERVICES))
def serve(service: str) -> None:
    """Run one service in the foreground (as Kubernetes and `vane up` do)."""
    module = importlib.import_module(f"services.{service}.app")
    module.main()


@cli.command()
def migrate() -> None:
    """Apply the database migrations (creating the database if needed) and exit."""
    settings = Settings.from_env()
    try:
        applied = asyncio.run(db.migrate(settings.database_url))
    except db.SchemaMismatch as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach Postgres at {settings.database_url}: {exc}") from None
    latest = db.latest_known_version()
    if applied:
        click.echo(f"applied migrations {applied[0]}..{applied[-1]}; schema at version {latest}")
    else:
        click.echo(f"schema already at version {latest}")


@cli.group()
def projects() -> None:
    """Projects and their keys."""


@projects.command("create")
@click.argument("name")
def projects_create(name: str) -> None:
    """Create a project and print its new key pair (the secret is shown once)."""
    import asyncpg

    from services.common.auth import create_project

    settings = Settings.from_env()

    async def run() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await db.check_schema(conn)
            project_id, keys = await create_project(conn, name)
        except asyncpg.UniqueViolationError:
            raise click.ClickException(f"a project named {name!r} already exists") from None
        except db.SchemaMismatch as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await conn.close()
        click.echo(f"project:    {name} ({project_id})")
        click.echo(f"public key: {keys.public_key}")
        click.echo(f"secret key: {keys.secret_key}")

    asyncio.run(run())


@cli.command()
@click.option("--demo", is_flag=True, help="Also load a demo workload so that every view has data.")
def up(demo: bool) -> None:
    """Start the whole stack on this machine; Ctrl-C stops all of it."""
    from services.cli.up import run_stack

    raise SystemExit(run_stack(demo=demo))


cli.add_command(importlib.import_module("services.cli.prompts").prompts)
cli.add_command(importlib.import_module("services.cli.evals").eval_command)
cli.add_command(importlib.import_module("services.cli.deciding").compare_command)
cli.add_command(importlib.import_module("services.cli.deciding").winner_command)
cli.add_command(importlib.import_module("services.cli.experiments").experiments)
cli.add_command(importlib.import_module("services.cli.datasets").datasets)
cli.add_command(importlib.import_module("services.cli.rollouts").rollouts)
cli.add_command(importlib.import_module("services.cli.alerts").alerts)
cli.add_command(importlib.import_module("services.cli.keys").keys)
cli.add_command(importlib.import_module("services.cli.quotas").quotas)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
