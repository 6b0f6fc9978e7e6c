"""`vane datasets push FILE` (JSONL or CSV) and `vane datasets list`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from services.cli.deciding import ask, json_option, query_url_option, secret_key_option

_FIELDS = ("id", "input", "expected_output", "metadata")


def read_items(path: Path) -> list[dict[str, Any]]:
    """Items from a JSONL file (one object a line) or a CSV file (columns id, input, expected_output,
    metadata; a cell holding JSON is read as JSON)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        items = []
        for n, row in enumerate(rows, 2):
            if "input" not in row:
                raise click.ClickException(f"{path}: a CSV needs an input column")
            item = {k: _cell(v) for k, v in row.items() if k in _FIELDS and v not in (None, "")}
            if "input" not in item:
                raise click.ClickException(f"{path}:{n}: the input is empty")
            items.append(item)
        return items
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise click.ClickException(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(item, dict) or "input" not in item:
            raise click.ClickException(f'{path}:{n}: each line must be an object with "input"')
        items.append(item)
    return items


def _cell(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


@click.group("datasets")
def datasets() -> None:
    """Datasets of items that versions run offline."""


@datasets.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="the dataset (created when missing)")
@click.option("--description", default="", help="for a dataset created now")
@query_url_option
@secret_key_option
@json_option
def push(file: Path, name: str, description: str, url: str | None, secret_key: str, as_json: bool) -> None:
    """Add the items of a JSONL or CSV file (an id already there gets a new version)."""
    items = read_items(file)
    if not items:
        raise click.ClickException(f"{file} holds no items")
    known = {d["name"] for d in ask(url, secret_key, "GET", "/api/v1/datasets")["datasets"]}
    if name not in known:
        ask(url, secret_key, "POST", "/api/v1/datasets", body={"name": name, "description": description})
    stored: list[dict[str, Any]] = []
    for start in range(0, len(items), 1000):
        path = f"/api/v1/datasets/{name}/items"
        stored.extend(ask(url, secret_key, "POST", path, body=items[start : start + 1000])["items"])
    if as_json:
        click.echo(json.dumps({"items": stored}, indent=2))
    else:
        click.echo(f"{len(stored)} items in dataset {name}")


@datasets.command("list")
@query_url_option
@secret_key_option
@json_option
def list_command(url: str | None, secret_key: str, as_json: bool) -> None:
    """The project's datasets."""
    found = ask(url, secret_key, "GET", "/api/v1/datasets")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table()
    for column in ("name", "items", "description"):
        table.add_column(column)
    for d in found["datasets"]:
        table.add_row(d["name"], str(d["items"]), d["description"])
    Console().print(table)
