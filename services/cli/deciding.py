"""`vane compare` and `vane winner`: the deciding API as readable tables (or --json for scripts);
`vane winner --promote LABEL` moves the label onto a clear winner through the registry's API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table
from vane.http_json import ApiError, call

from services.cli.prompts import RegistryClient
from services.common.settings import Settings

_VERDICT_STYLE = {"b_better": "bold green", "b_worse": "bold red", "different": "yellow", "no_difference": "dim"}

query_url_option = click.option(
    "--url", envvar="VANE_QUERY_URL", help="the aggregator's query API [default: http://127.0.0.1:8080]"
)
secret_key_option = click.option(
    "--secret-key", envvar="VANE_SECRET_KEY", required=True, help="the project's secret key (sk-vane-…)"
)
_window = [
    click.option("--from", "start", default=None, help="ISO 8601 start (inclusive)"),
    click.option("--to", "end", default=None, help="ISO 8601 end (exclusive)"),
]
json_option = click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")


def _with(options: list[Any]) -> Any:
    def wrap(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def ask(url: str | None, secret_key: str, method: str, path: str, **kwargs: Any) -> Any:
    base = (url or f"http://127.0.0.1:{Settings.from_env().aggregator_port}").rstrip("/")
    try:
        return call(method, base, path, secret_key, **kwargs)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@click.command("compare")
@click.option("--kind", type=click.Choice(["prompt", "app"]), default="prompt", show_default=True)
@click.option("--name", default=None, help="the prompt's name (kind prompt)")
@click.option("--project-name", default=None, help="the app's name, when two apps share a version name (kind app)")
@click.option("--alpha", type=float, default=None, help="family-wise error rate [default: 0.05]")
@_with(_window)
@query_url_option
@secret_key_option
@json_option
@click.argument("a")
@click.argument("b")
def compare_command(
    kind: str,
    name: str | None,
    project_name: str | None,
    alpha: float | None,
    start: str | None,
    end: str | None,
    url: str | None,
    secret_key: str,
    as_json: bool,
    a: str,
    b: str,
) -> None:
    """Compare version B against version A on every metric, with statistics."""
    params = {"kind": kind, "name": name, "a": a, "b": b, "from": start, "to": end, "alpha": alpha}
    body = ask(url, secret_key, "GET", "/api/v1/compare", params={**params, "project_name": project_name})
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    title = f"{body.get('name') or 'app'}: {body['b']['version']} (n={body['b']['n']}) against "
    title += f"{body['a']['version']} (n={body['a']['n']})"
    table = Table(title=title)
    for column in ("metric", "statistic", "better", "a", "b", "difference", "95% interval", "p", "test", "verdict"):
        table.add_column(column, justify="right" if column in ("a", "b", "difference", "p") else "left")
    for c in body["metrics"]:
        ci = c["ci95"]
        verdict = c["verdict"]
        if verdict == "not_enough_data" and c["samples_needed"]:
            verdict += f" (~{c['samples_needed']} per arm)"
        table.add_row(
            c["metric"],
            c["statistic"],
            c["better"],
            number(c["a"]["estimate"]),
            number(c["b"]["estimate"]),
            number(c["difference"]),
            f"[{number(ci[0])}, {number(ci[1])}]" if ci else "–",
            number(c["p_value"]),
            c["test"] or "–",
            f"[{_VERDICT_STYLE.get(c['verdict'], '')}]{verdict}",
        )
    Console().print(table)


def _weights(values: tuple[str, ...]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for value in values:
        metric, sep, weight = value.rpartition("=")
        try:
            weights[metric] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not metric:
            raise click.BadParameter(f"{value!r} is not METRIC=WEIGHT (latency_ms=2)", param_hint="--weight")
    return weights


@click.command("winner")
@click.option("--kind", type=click.Choice(["prompt", "app"]), default="prompt", show_default=True)
@click.option("--name", default=None, help="the prompt's name (kind prompt)")
@click.option("--weight", "weights", multiple=True, required=True, help="METRIC=WEIGHT, repeated (score:helpfulness=3)")
@click.option("--candidate", "candidates", multiple=True, help="only these versions (repeated)")
@click.option("--normalisation", type=click.Choice(["min_max", "rank"]), default=None)
@click.option("--promote", "promote_label", default=None, help="move this label onto the winner, if it is clear")
@click.option("--registry-url", envvar="VANE_REGISTRY_URL", help="the registry's HTTP API (for --promote)")
@_with(_window)
@query_url_option
@secret_key_option
@json_option
def winner_command(
    kind: str,
    name: str | None,
    weights: tuple[str, ...],
    candidates: tuple[str, ...],
    normalisation: str | None,
    promote_label: str | None,
    registry_url: str | None,
    start: str | None,
    end: str | None,
    url: str | None,
    secret_key: str,
    as_json: bool,
) -> None:
    """Rank versions on weighted, normalised metrics; with --promote, move a label onto a clear winner."""
    if promote_label and kind != "prompt":
        raise click.UsageError("--promote moves a prompt's label: use it with --kind prompt")
    request: dict[str, Any] = {"kind": kind, "weights": _weights(weights)}
    optional = {"name": name, "from": start, "to": end, "normalisation": normalisation}
    request.update({k: v for k, v in optional.items() if v is not None})
    if candidates:
        request["candidates"] = [int(c) if kind == "prompt" and c.isdigit() else c for c in candidates]
    body = ask(url, secret_key, "POST", "/api/v1/winner", body=request)
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        metrics = list(request["weights"])
        table = Table(title=f"winner: {body['winner'] if body['clear'] else 'no clear winner'}")
        for column in ("rank", "version", "score", *metrics):
            table.add_column(column, justify="left" if column == "version" else "right")
        for r in body["ranking"]:
            cells = [f"{number(r['metrics'].get(m))} ({r['contributions'].get(m, 0):.2f})" for m in metrics]
            table.add_row(str(r["rank"]), str(r["version"]), f"{r['score']:.3f}", *cells)
        console = Console()
        console.print(table)
        console.print(body["reason"])
    if promote_label:
        if not body["clear"]:
            raise click.ClickException(f"not promoting: {body['reason']}")
        registry = RegistryClient(
            registry_url or f"http://127.0.0.1:{Settings.from_env().registry_http_port}", secret_key
        )
        path = f"/api/v1/prompts/{quote(str(name), safe='')}/versions/{body['winner']}"
        registry.call("PATCH", path, json={"labels": [promote_label]})
        click.echo(f"{name} version {body['winner']} now carries {promote_label}", err=as_json)
