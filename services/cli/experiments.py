"""`vane experiments create|list|show|stop`: experiments on split labels, as tables or --json."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from services.cli.deciding import ask, json_option, number, query_url_option, secret_key_option


@click.group("experiments")
def experiments() -> None:
    """A/B experiments on a label that splits traffic."""


def _show(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    primary = body["primary"]
    console = Console()
    srm = body["srm"]
    console.print(
        f"[bold]{body['name']}[/] ({body['id']}) on {body['prompt']}:{body['label']}, {body['status']} "
        f"since {body['started_at']}; primary {primary['metric']} ({primary['better']} is better)"
    )
    table = Table()
    for column in ("version", "weight", "runs", "share", "estimate", "P(best)", "anytime 95% interval"):
        table.add_column(column, justify="right")
    chances = primary.get("probability_best") or {}
    for arm in body["arms"]:
        v = str(arm["version"])
        ci = primary["sequential_ci95"].get(v)
        table.add_row(
            v,
            str(arm["weight"]),
            str(arm["n"]),
            number(arm["observed_share"]),
            number(primary["estimates"].get(v)),
            number(chances.get(v)),
            f"[{number(ci[0])}, {number(ci[1])}]" if ci else "–",
        )
    console.print(table)
    mismatch = "[bold red]MISMATCH[/]" if srm["mismatch"] else "ok"
    console.print(f"sample ratio: {mismatch} (p = {number(srm['p_value'])})")
    winner = f", winner {primary['winner']}" if primary.get("winner") is not None else ""
    console.print(f"verdict: {primary['verdict']}{winner}")
    for g in body["guardrails"]:
        console.print(f"guardrail {g['metric']} {g['statistic']} (version {g['arm']}): {g['verdict']}")
    if body.get("decision"):
        console.print(f"decision: {body['decision']}")


@experiments.command("create")
@click.option("--name", required=True)
@click.option("--prompt", required=True, help="the prompt's name")
@click.option("--label", required=True, help="the label that splits traffic")
@click.option("--metric", "primary_metric", required=True, help="the primary METRIC (latency_ms, score:helpfulness…)")
@click.option("--guardrail", "guardrails", multiple=True, help="a METRIC that must not worsen (repeated)")
@click.option("--min-samples", "min_samples_per_arm", type=int, default=100, show_default=True)
@query_url_option
@secret_key_option
@json_option
def create(
    name: str,
    prompt: str,
    label: str,
    primary_metric: str,
    guardrails: tuple[str, ...],
    min_samples_per_arm: int,
    url: str | None,
    secret_key: str,
    as_json: bool,
) -> None:
    """Start an experiment on a split label."""
    body = {
        "name": name,
        "prompt": prompt,
        "label": label,
        "primary_metric": primary_metric,
        "guardrails": list(guardrails),
        "min_samples_per_arm": min_samples_per_arm,
    }
    _show(ask(url, secret_key, "POST", "/api/v1/experiments", body=body), as_json)


@experiments.command("list")
@query_url_option
@secret_key_option
@json_option
def list_command(url: str | None, secret_key: str, as_json: bool) -> None:
    """Every experiment of the project, newest first."""
    found = ask(url, secret_key, "GET", "/api/v1/experiments")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table()
    for column in ("id", "name", "prompt", "label", "status", "verdict", "sample ratio"):
        table.add_column(column)
    for e in found["experiments"]:
        srm = "MISMATCH" if e["srm"]["mismatch"] else "ok"
        table.add_row(e["id"], e["name"], e["prompt"], e["label"], e["status"], e["primary"]["verdict"], srm)
    Console().print(table)


@experiments.command("show")
@click.argument("experiment_id")
@query_url_option
@secret_key_option
@json_option
def show(experiment_id: str, url: str | None, secret_key: str, as_json: bool) -> None:
    """One experiment: arms, sample ratio, primary metric and guardrails."""
    _show(ask(url, secret_key, "GET", f"/api/v1/experiments/{experiment_id}"), as_json)


@experiments.command("stop")
@click.argument("experiment_id")
@click.option("--decision", type=click.Choice(["promote", "keep"]), required=True)
@click.option("--version", type=int, default=None, help="the version to promote (default: the winner)")
@query_url_option
@secret_key_option
@json_option
def stop(
    experiment_id: str, decision: str, version: int | None, url: str | None, secret_key: str, as_json: bool
) -> None:
    """Stop with a decision; promote moves the label onto the version alone."""
    body: dict[str, Any] = {"decision": decision}
    if version is not None:
        body["version"] = version
    _show(ask(url, secret_key, "POST", f"/api/v1/experiments/{experiment_id}/stop", body=body), as_json)
