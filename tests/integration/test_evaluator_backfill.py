"""`vane eval run` scores runs the aggregator stored, after the fact, once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import asyncpg

from services.common.bus import Bus
from tests.conftest import Infra, Project
from tests.integration.test_evaluator import ScoreReader, a_span, publish_spans
from tests.support.processes import REPO, ServiceProcess


def vane(infra: Infra, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env={**os.environ, **infra.env()},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def stored_runs(pool: asyncpg.Pool, project: Project, count: int) -> int:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        n = int(await pool.fetchval("SELECT count(*) FROM runs WHERE project_id = $1", project.id))
        if n >= count or asyncio.get_running_loop().time() > deadline:
            return n
        await asyncio.sleep(0.3)


async def test_eval_run_scores_an_older_versions_stored_runs_once(
    infra: Infra,
    pool: asyncpg.Pool,
    run_bus: Bus,
    make_project: Any,
    start_service: Callable[..., ServiceProcess],
) -> None:
    project = await make_project()
    start_service("aggregator")
    reader = await ScoreReader(run_bus, project).open()
    old = [a_span(project, app_version="old", output=f"Paris, answer {i}") for i in range(4)]
    new = [a_span(project, app_version="new") for _ in range(2)]
    await publish_spans(run_bus, project, old + new)
    assert await stored_runs(pool, project, 6) == 6

    args = ["eval", "run", "--project", project.name, "--app-version", "old", "--evaluator", "contains"]
    first = vane(infra, *args, "--config", json.dumps({"value": "Paris"}))
    assert first.returncode == 0, first.stderr
    assert "runs 4: scored 4, errors 0, already scored 0" in first.stdout
    assert "4/4" in first.stderr  # tqdm's progress bar

    scores = await reader.settled(4)
    assert {s.span_id for s in scores} == {s.span_id for s in old}
    assert {(s.name, s.evaluator_name, s.value) for s in scores} == {("contains", "contains", 1.0)}

    again = vane(infra, *args, "--config", json.dumps({"value": "Paris"}))
    assert again.returncode == 0 and "scored 0, errors 0, already scored 4" in again.stdout
    assert len({s.score_id for s in await reader.settled(4)}) == 4
    await reader.close()


async def test_eval_run_refuses_an_unknown_evaluator_with_a_clear_message(infra: Infra, make_project: Any) -> None:
    project = await make_project()
    result = vane(infra, "eval", "run", "--project", project.name, "--app-version", "v1", "--evaluator", "vibes")
    assert result.returncode != 0 and "neither a rule of this project nor an evaluator" in result.stderr
