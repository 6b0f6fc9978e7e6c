"""`vane rollouts start|show|abort`: guarded rollouts in the registry, as readable tables (or --json)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table

from services.cli.prompts import RegistryClient
from services.common.settings import Settings

_STATUS_STYLE = {"running": "bold yellow", "completed": "bold green", "rolled_back": "bold red", "aborted": "dim"}
_as_json = click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")


def _client(ctx: click.Context) -> RegistryClient:
    client = ctx.obj
    assert isinstance(client, RegistryClient)
    return client


def _path(name: str, *rest: str) -> str:
    return "/".join((f"/api/v1/prompts/{quote(name, safe='')}/rollouts", *(quote(r, safe="") for r in rest)))


def _print(rollouts: list[dict[str, Any]]) -> None:
    console = Console()
    for r in rollouts:
        steps = " → ".join(f"[bold]{s}%[/bold]" if i == r["step"] else f"{s}%" for i, s in enumerate(r["steps"]))
        style = _STATUS_STYLE.get(r["status"], "")
        title = (
            f"{r['prompt']} {r['label']}: v{r['from_version']} → v{r['to_version']}  "
            f"[{style}]{r['status']}[/{style}]  v{r['to_version']} at {r['weight']}%"
        )
        console.print(title)
        console.print(
            f"  id {r['id']}  steps {steps}  {r['min_samples_per_step']} runs a step, "
            f"guardrails {', '.join(r['guardrails'])}"
        )
        table = Table()
        for column in ("at", "step", "weight", "event", "reason"):
            table.add_column(column, justify="right" if column in ("step", "weight") else "left")
        for h in r["history"]:
            table.add_row(h["at"], str(h["step"]), f"{h['weight']}%", h["event"], h["reason"])
        console.print(table)


def _show(body: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        _print(body.get("rollouts", [body]))


@click.group("rollouts")
@click.option("--url", envvar="VANE_REGISTRY_URL", help="the registry's HTTP API [default: http://127.0.0.1:8081]")
@click.option("--secret-key", envvar="VANE_SECRET_KEY", required=True, help="the project's secret key (sk-vane-…)")
@click.pass_context
def rollouts(ctx: click.Context, url: str | None, secret_key: str) -> None:
    """Guarded rollouts: a label moved to a new version step by step, rolled back when a guardrail regresses."""
    ctx.obj = RegistryClient(url or f"http://127.0.0.1:{Settings.from_env().registry_http_port}", secret_key)


def _steps(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma list of percentages (5,25,50,100)") from None


@rollouts.command()
@click.argument("name")
@click.argument("to_version", type=int)
@click.option("--label", default="production", show_default=True, help="the label to move")
@click.option("--steps", default="5,25,50,100", show_default=True, help="to_version's weight at each step")
@click.option("--min-samples", "min_samples", type=int, default=200, show_default=True, help="runs a step waits for")
@click.option(
    "--guardrail",
    "guardrails",
    multiple=True,
    help="a METRIC that must not regress, repeated [default: latency_ms, error_rate]",
)
@_as_json
@click.pass_context
def start(
    ctx: click.Context,
    name: str,
    to_version: int,
    label: str,
    steps: str,
    min_samples: int,
    guardrails: tuple[str, ...],
    as_json: bool,
) -> None:
    """Start moving LABEL of prompt NAME to TO_VERSION, step by step."""
    request: dict[str, Any] = {
        "label": label,
        "to_version": to_version,
        "steps": _steps(steps),
        "min_samples_per_step": min_samples,
    }
    if guardrails:
        request["guardrails"] = list(guardrails)
    _show(_client(ctx).call("POST", _path(name), json=request), as_json)


@rollouts.command()
@click.argument("name")
@click.argument("rollout_id", required=False)
@_as_json
@click.pass_context
def show(ctx: click.Context, name: str, rollout_id: str | None, as_json: bool) -> None:
    """Show one rollout of prompt NAME with its history, or all of them, newest first."""
    _show(_client(ctx).call("GET", _path(name, rollout_id) if rollout_id else _path(name)), as_json)


@rollouts.command()
@click.argument("name")
@click.argument("rollout_id")
@_as_json
@click.pass_context
def abort(ctx: click.Context, name: str, rollout_id: str, as_json: bool) -> None:
    """Abort a running rollout: the label goes back to its from_version alone."""
    _show(_client(ctx).call("POST", _path(name, rollout_id, "abort")), as_json)
