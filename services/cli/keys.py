"""`vane keys`: create, list and revoke a project's scoped keys through the registry's HTTP API
(the key given must hold the admin scope)."""

from __future__ import annotations

from urllib.parse import quote

import click

from services.cli.prompts import RegistryClient
from services.common.scopes import Scope
from services.common.settings import Settings

SCOPE_NAMES = [s.value for s in Scope]


@click.group("keys")
@click.option("--url", envvar="VANE_REGISTRY_URL", help="the registry's HTTP API [default: http://127.0.0.1:8081]")
@click.option("--secret-key", envvar="VANE_SECRET_KEY", required=True, help="a secret key with the admin scope")
@click.pass_context
def keys(ctx: click.Context, url: str | None, secret_key: str) -> None:
    """The project's API keys and their scopes."""
    ctx.obj = RegistryClient(url or f"http://127.0.0.1:{Settings.from_env().registry_http_port}", secret_key)


def _client(ctx: click.Context) -> RegistryClient:
    client = ctx.obj
    assert isinstance(client, RegistryClient)
    return client


@keys.command("create")
@click.option("--name", default="", help="what the key is for (shown by `vane keys list`)")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPE_NAMES),
    help="a scope the key holds; repeat for several",
)
@click.pass_context
def create(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it (the secret is shown once)."""
    made = _client(ctx).call("POST", "/api/v1/keys", json={"name": name, "scopes": list(scopes)})
    click.echo(f"public key: {made['public_key']}")
    click.echo(f"secret key: {made['secret_key']}")
    click.echo(f"scopes:     {' '.join(made['scopes'])}")


@keys.command("list")
@click.pass_context
def list_keys(ctx: click.Context) -> None:
    """The project's keys: public key, scopes, name, and whether revoked."""
    for key in _client(ctx).call("GET", "/api/v1/keys")["keys"]:
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
        click.echo(f"{key['public_key']}  {','.join(key['scopes']):<26}  {state:<8}  {key['name']}")


@keys.command("revoke")
@click.argument("public_key")
@click.pass_context
def revoke(ctx: click.Context, public_key: str) -> None:
    """Revoke a key: every replica refuses it within seconds."""
    _client(ctx).call("DELETE", f"/api/v1/keys/{quote(public_key, safe='')}")
    click.echo(f"revoked {public_key}")
