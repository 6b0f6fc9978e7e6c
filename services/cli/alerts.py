"""`vane alerts`: rules, events and silences through the alert service's HTTP API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import yaml

from services.cli.prompts import RegistryClient
from services.common.settings import Settings

_DURATION = re.compile(r"^(\d+)([mhd])$")
_MATCHER = re.compile(r"^([^=~]+)(=~|=)(.*)$")


def _client(ctx: click.Context) -> RegistryClient:
    client = ctx.obj
    assert isinstance(client, RegistryClient)
    return client


@click.group("alerts")
@click.option("--url", envvar="VANE_ALERT_URL", help="the alert service's HTTP API [default: http://127.0.0.1:8083]")
@click.option("--secret-key", envvar="VANE_SECRET_KEY", required=True, help="the project's secret key (sk-vane-…)")
@click.pass_context
def alerts(ctx: click.Context, url: str | None, secret_key: str) -> None:
    """Alert rules, their events, and silences."""
    ctx.obj = RegistryClient(url or f"http://127.0.0.1:{Settings.from_env().alert_port}", secret_key)


@alerts.command()
@click.option("--create", "create", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="a rule file")
@click.option("--delete", "delete", help="the id of a rule to delete")
@click.pass_context
def rules(ctx: click.Context, create: Path | None, delete: str | None) -> None:
    """List the rules with their states; --create FILE (YAML or JSON) adds one, --delete ID removes one."""
    client = _client(ctx)
    if create is not None:
        rule = client.call("POST", "/api/v1/alerts/rules", json=yaml.safe_load(create.read_text()))
        click.echo(f"created {rule['id']} ({rule['name']})")
        return
    if delete is not None:
        client.call("DELETE", f"/api/v1/alerts/rules/{delete}")
        click.echo(f"deleted {delete}")
        return
    for rule in client.call("GET", "/api/v1/alerts/rules")["rules"]:
        value = "-" if rule["last_value"] is None else f"{rule['last_value']:.6g}"
        click.echo(f"{rule['id']}  {rule['state']:<8}  {rule['statistic']} {rule['metric']} = {value}  {rule['name']}")


@alerts.command()
@click.option("--rule", help="only this rule's events")
@click.option("--state", help="pending, firing, resolved or ok")
@click.option("--json", "as_json", is_flag=True, help="the events as JSON")
@click.pass_context
def events(ctx: click.Context, rule: str | None, state: str | None, as_json: bool) -> None:
    """The newest events first."""
    params = {k: v for k, v in (("rule", rule), ("state", state)) if v}
    found = _client(ctx).call("GET", "/api/v1/alerts/events", params=params)["events"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for e in found:
        name = (e["body"].get("rule") or {}).get("name") or e["body"].get("decision", {}).get("prompt", "")
        click.echo(f"{e['at']}  {e['kind']:<10} {e['state']:<9} {e['severity']:<8} {name}")


@alerts.command()
@click.option("--matcher", "matchers", multiple=True, required=True, help="label=value (label=~regex for a regex)")
@click.option("--for", "duration", default="1h", show_default=True, help="how long: 30m, 2h, 1d")
@click.option("--comment", default="")
@click.pass_context
def silence(ctx: click.Context, matchers: tuple[str, ...], duration: str, comment: str) -> None:
    """Silence the events whose labels match every --matcher."""
    found = _DURATION.match(duration)
    if not found:
        raise click.BadParameter("a number and m, h or d: 30m, 2h, 1d", param_hint="--for")
    minutes = int(found.group(1)) * {"m": 1, "h": 60, "d": 1440}[found.group(2)]
    parsed = []
    for m in matchers:
        pair = _MATCHER.match(m)
        if not pair:
            raise click.BadParameter(f"{m!r} is not label=value", param_hint="--matcher")
        parsed.append({"name": pair.group(1), "value": pair.group(3), "is_regex": pair.group(2) == "=~"})
    until = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
    body = {"matchers": parsed, "until": until, "comment": comment}
    made = _client(ctx).call("POST", "/api/v1/alerts/silences", json=body)
    click.echo(f"silenced until {made['until']} ({made['id']})")
