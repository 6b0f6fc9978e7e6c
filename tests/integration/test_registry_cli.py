"""`vane prompts` against a real registry: push a file, get, diff, promote, roll back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.common.auth import create_project
from tests.conftest import Infra
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def registry(infra: Infra) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("registry", infra.env(), infra.log_dir).start()
    yield proc
    proc.kill()


async def test_push_get_diff_promote_and_rollback(registry: ServiceProcess, pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        _, keys = await create_project(conn, f"cli-{secrets.token_hex(4)}")
    runner = CliRunner(env={"VANE_REGISTRY_URL": registry.url, "VANE_SECRET_KEY": keys.secret_key})

    def vane(*args: str) -> str:
        result = runner.invoke(cli, ["prompts", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    first = tmp_path / "reply.yaml"
    first.write_text(
        "name: reply\nprompt: |\n  Hello {{name}}\n  Be brief.\nconfig:\n  temperature: 0.2\nlabels: [production]\n"
    )
    assert vane("push", str(first)) == "pushed reply version 1 (latest, production)\n"
    second = tmp_path / "reply.json"
    second.write_text(
        json.dumps({"name": "reply", "prompt": "Hello {{name}}\nBe thorough.", "config": {"temperature": 0.7}})
    )
    assert vane("push", str(second)) == "pushed reply version 2 (latest)\n"
    assert json.loads(vane("get", "reply"))["version"] == 1
    assert json.loads(vane("get", "reply", "--version", "2"))["prompt"] == "Hello {{name}}\nBe thorough."
    diff = vane("diff", "reply", "1", "2")
    assert "-Be brief." in diff and "+Be thorough." in diff and '+  "temperature": 0.7' in diff
    assert vane("promote", "reply", "2", "--label", "production") == "reply version 2 now carries latest, production\n"
    assert json.loads(vane("get", "reply", "--label", "production"))["version"] == 2
    assert vane("rollback", "reply", "--label", "production") == "reply production: v2 -> v1\n"
    assert json.loads(vane("get", "reply"))["version"] == 1

    refused = runner.invoke(cli, ["prompts", "promote", "reply", "1", "--label", "latest"])
    assert refused.exit_code != 0 and "400" in refused.output and "latest" in refused.output
    missing = runner.invoke(cli, ["prompts", "get", "nope"])
    assert missing.exit_code != 0 and "404" in missing.output
