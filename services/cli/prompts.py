"""`vane prompts`: push, get, diff, promote and roll back prompt versions through the registry's HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
import yaml

from services.common.settings import Settings


class RegistryClient:
    def __init__(self, url: str, secret_key: str) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret_key}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer, or a ClickException with the registry's own error message."""
        try:
            r = httpx.request(method, f"{self.url}{path}", headers=self._headers, timeout=10, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the registry at {self.url}: {exc}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text
            raise click.ClickException(f"{r.status_code}: {message}")
        return r.json() if r.content else None


def _client(ctx: click.Context) -> RegistryClient:
    client = ctx.obj
    assert isinstance(client, RegistryClient)
    return client


def _quoted(name: str) -> str:
    return quote(name, safe="")


@click.group("prompts")
@click.option("--url", envvar="VANE_REGISTRY_URL", help="the registry's HTTP API [default: http://127.0.0.1:8081]")
@click.option("--secret-key", envvar="VANE_SECRET_KEY", required=True, help="the project's secret key (sk-vane-…)")
@click.pass_context
def prompts(ctx: click.Context, url: str | None, secret_key: str) -> None:
    """Versioned prompts in the registry."""
    ctx.obj = RegistryClient(url or f"http://127.0.0.1:{Settings.from_env().registry_http_port}", secret_key)


@prompts.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def push(ctx: click.Context, file: Path) -> None:
    """Create a new version from a YAML or JSON file of one prompt (name, prompt, type, config, labels, tags,
    commit_message)."""
    try:
        body = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{file} is not YAML or JSON: {exc}") from None
    if not isinstance(body, dict):
        raise click.ClickException(f"{file} must hold one prompt: an object with name and prompt")
    created = _client(ctx).call("POST", "/api/v1/prompts", json=body)
    labels = ", ".join(created["labels"])
    click.echo(f"pushed {created['name']} version {created['version']} ({labels})")


@prompts.command()
@click.argument("name")
@click.option("--label", help="the label to resolve [default: production]")
@click.option("--version", type=int, help="a version number")
@click.pass_context
def get(ctx: click.Context, name: str, label: str | None, version: int | None) -> None:
    """Print one version as JSON."""
    params: dict[str, Any] = {"version": version} if version else {"label": label or "production"}
    click.echo(json.dumps(_client(ctx).call("GET", f"/api/v1/prompts/{_quoted(name)}", params=params), indent=2))


@prompts.command()
@click.argument("name")
@click.argument("old", type=int)
@click.argument("new", type=int)
@click.pass_context
def diff(ctx: click.Context, name: str, old: int, new: int) -> None:
    """Line diff of two versions' prompt and config."""
    answer = _client(ctx).call("GET", f"/api/v1/prompts/{_quoted(name)}/diff", params={"from": old, "to": new})
    if not answer["changed"]:
        click.echo(f"{name}: versions {old} and {new} do not differ")
        return
    if answer["type"]["from"] != answer["type"]["to"]:
        click.echo(f"type: {answer['type']['from']} -> {answer['type']['to']}")
    for line in [*answer["prompt"], *answer["config"]]:
        click.echo(line)


@prompts.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--label", "labels", multiple=True, required=True, help="label to move onto the version (repeatable)")
@click.pass_context
def promote(ctx: click.Context, name: str, version: int, labels: tuple[str, ...]) -> None:
    """Move labels onto a version (for example production)."""
    moved = _client(ctx).call("PATCH", f"/api/v1/prompts/{_quoted(name)}/versions/{version}", json={"labels": labels})
    click.echo(f"{name} version {moved['version']} now carries {', '.join(moved['labels'])}")


@prompts.command()
@click.argument("name")
@click.option("--label", required=True, help="the label to move back")
@click.pass_context
def rollback(ctx: click.Context, name: str, label: str) -> None:
    """Move a label back to the version it pointed at before its last move."""
    answer = _client(ctx).call("POST", f"/api/v1/prompts/{_quoted(name)}/labels/{label}/rollback")

    def versions(split: list[dict[str, int]]) -> str:
        return " + ".join(f"v{s['version']}" + (f" ({s['weight']})" if len(split) > 1 else "") for s in split) or "-"

    click.echo(f"{name} {label}: {versions(answer['from'])} -> {versions(answer['to'])}")
