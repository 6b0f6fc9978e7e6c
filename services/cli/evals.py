"""`vane eval run`: score stored runs after the fact, with a progress bar."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from services.common.settings import Settings


def _since(value: str | None) -> datetime | None:
    """ISO 8601 (`2025-06-01`, `2025-06-01T12:00:00Z`) or a duration back from now (`90m`, `24h`, `7d`)."""
    if not value:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither ISO 8601 nor a duration like 24h or 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json_object(value: str | None, option: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"{option} must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"{option} must be a JSON object")
    return parsed


@click.group("eval")
def eval_command() -> None:
    """Evaluations: score stored runs with an evaluator."""


@eval_command.command("run")
@click.option("--evaluator", "evaluator", required=True, help="A rule of the project, or a catalogue evaluator.")
@click.option("--app-version", required=True, help="The app version (project_version_name) whose runs to score.")
@click.option("--prompt", "prompt_name", default=None, help="Only runs of this prompt.")
@click.option("--prompt-version", type=int, default=None, help="Only runs of this prompt version.")
@click.option("--since", default=None, help="Only runs since: ISO 8601 or a duration back (24h, 7d).")
@click.option("--project", required=True, help="The project's name or id.")
@click.option("--span-kind", default=None, help="Score spans of this kind (default: generations).")
@click.option("--mapping", default=None, help='Evaluator inputs to span paths, JSON: {"reference": "expected"}.')
@click.option("--config", "config", default=None, help='Evaluator config, JSON: {"pattern": "\\\\d+"}.')
@click.option("--concurrency", type=int, default=64, show_default=True, help="Evaluations at once.")
def run(
    evaluator: str,
    app_version: str,
    prompt_name: str | None,
    prompt_version: int | None,
    since: str | None,
    project: str,
    span_kind: str | None,
    mapping: str | None,
    config: str | None,
    concurrency: int,
) -> None:
    """Score the stored runs of an app version (and prompt) with an evaluator, as the live path would:
    same score names and ids, so running it twice scores nothing twice."""
    from services.common.errors import VaneError

    options = {
        "evaluator": evaluator,
        "app_version": app_version,
        "prompt_name": prompt_name,
        "prompt_version": prompt_version,
        "since": _since(since),
        "project": project,
        "span_kind": span_kind,
        "mapping": _json_object(mapping, "--mapping"),
        "config": _json_object(config, "--config"),
        "concurrency": concurrency,
    }
    try:
        summary = asyncio.run(_run(Settings.from_env(), **options))
    except VaneError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach Postgres or NATS: {exc}") from None
    click.echo(
        f"runs {summary.runs}: scored {summary.scored}, errors {summary.errors}, "
        f"already scored {summary.already_done}, not selected {summary.not_selected}"
    )
    if summary.judge_unavailable:
        raise click.ClickException(f"{summary.judge_unavailable} runs were not scored: the judge was unavailable")


async def _run(settings: Settings, **options: Any) -> Any:
    from tqdm import tqdm

    from services.common import db
    from services.common.bus import connect_bus
    from services.evaluator import backfill
    from services.evaluator.config import EvaluatorConfig
    from services.evaluator.embedding import EmbeddingBatcher
    from services.evaluator.evaluate import Evaluators
    from services.evaluator.judge import Judge

    conn = await db.connect_with_retry(settings.database_url, deadline_seconds=5)
    try:
        await db.check_schema(conn)
    except db.SchemaMismatch as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        await conn.close()
    pool = await db.create_pool(settings.database_url, 1, 4)
    bus = await connect_bus(settings, "eval-run", deadline_seconds=5)
    evaluators = Evaluators(Judge(EvaluatorConfig.from_env().judge), EmbeddingBatcher())
    try:
        project_id = await backfill.find_project(pool, options["project"])
        target = await backfill.find_target(
            pool, project_id, options["evaluator"], options["mapping"], options["config"]
        )
        selection = backfill.RunSelection(
            project_id,
            options["app_version"],
            options["prompt_name"],
            options["prompt_version"],
            options["since"],
            options["span_kind"],
        )
        total = await backfill.count_runs(pool, selection)
        with tqdm(total=total, unit="run", desc=f"{target.name} on {options['app_version']}") as bar:
            return await backfill.backfill(
                pool, bus, evaluators, target, selection, bar.update, max(1, options["concurrency"])
            )
    finally:
        await evaluators.close()
        await bus.close()
        await pool.close()
