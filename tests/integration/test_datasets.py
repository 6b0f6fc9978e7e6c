"""Datasets and offline runs through the real ingest and aggregator: items pushed from JSONL and
from stored runs, versions run by the SDK (resumable), item versions pinned by each run, and
comparisons paired by item that find a difference the unpaired test cannot at this size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import vane
from click.testing import CliRunner

from services.cli.main import cli
from services.common.statistics import BinnedSample, mann_whitney_u
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually

pytestmark = pytest.mark.slow

ITEMS = 200


class Interrupted(BaseException):
    """Escapes the task as a kill would: nothing after it runs."""


def _task(shift: float, stop_after: int | None = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An app whose answer quality is the item's own difficulty, plus `shift`, plus a little noise:
    items differ far more from each other than the versions do."""
    calls = [0]

    def answer(question: dict[str, Any]) -> dict[str, Any]:
        calls[0] += 1
        if stop_after is not None and calls[0] > stop_after:
            raise Interrupted
        noise = np.random.default_rng(question["q"]).normal(0, 0.02)
        return {"answer": f"a{question['q']}", "quality": question["base"] + shift + noise}

    return answer


def quality(input: Any, output: Any, expected: Any) -> float:
    return float(output["quality"])


def _verdict(body: dict[str, Any], metric: str) -> dict[str, Any]:
    assert "metrics" in body, body
    return next(c for c in body["metrics"] if c["metric"] == metric)


async def test_paired_runs_over_a_dataset_find_what_unpaired_cannot_and_resume_once(
    make_project: Callable[..., Any], start_service: Callable[..., Any], namespace: str, pool: Any, tmp_path: Path
) -> None:
    project = await make_project()
    env = {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}
    ingest, aggregator = start_service("ingest", **env), start_service("aggregator", **env)
    client = vane.Vane(
        secret_key=project.keys.secret_key, otlp_endpoint=ingest.url, api_url=ingest.url, query_url=aggregator.url
    )
    query = httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=30)
    try:
        # pushed from JSONL with the CLI
        rng = np.random.default_rng(3)
        lines = [
            json.dumps({"id": f"q{i}", "input": {"q": i, "base": float(rng.uniform(0, 1))}, "expected_output": "ok"})
            for i in range(ITEMS)
        ]
        (tmp_path / "qa.jsonl").write_text("\n".join(lines))
        keys = ["--url", aggregator.url, "--secret-key", project.keys.secret_key]
        pushed = CliRunner().invoke(cli, ["datasets", "push", str(tmp_path / "qa.jsonl"), "--name", "qa", *keys])
        assert pushed.exit_code == 0 and f"{ITEMS} items" in pushed.output, pushed.output
        again = CliRunner().invoke(cli, ["datasets", "push", str(tmp_path / "qa.jsonl"), "--name", "qa", *keys])
        assert again.exit_code == 0  # the same items again: no new versions
        assert {i["version"] for i in client.dataset_items("qa")} == {1}

        # a run interrupted half way, then resumed: each item runs once
        with pytest.raises(Interrupted):
            client.run_dataset("qa", _task(0.0, stop_after=120), "base", evaluators=[quality], concurrency=1)

        async def linked(version: str, n: int) -> bool:
            runs = {r["version_name"]: r for r in (await query.get("/api/v1/datasets/qa/runs")).json()["runs"]}
            return version in runs and runs[version]["items"] >= n

        await eventually(lambda: linked("base", 120), timeout=60)
        summary = await asyncio.to_thread(client.run_dataset, "qa", _task(0.0), "base", [quality], 8)
        assert (summary["skipped"], summary["items"], summary["errors"]) == (120, ITEMS - 120, 0)
        for version, shift in (("better", 0.05), ("worse", -0.05)):
            done = await asyncio.to_thread(client.run_dataset, "qa", _task(shift), version, [quality], 8)
            assert done["items"] == ITEMS and done["scores"]["quality"]["count"] == ITEMS

        async def scored() -> dict[str, Any] | None:
            runs = {r["version_name"]: r for r in (await query.get("/api/v1/datasets/qa/runs")).json()["runs"]}
            counts = [
                runs.get(v, {}).get("scores", {}).get("quality", {}).get("count") for v in ("base", "better", "worse")
            ]
            return runs if counts == [ITEMS] * 3 else None

        runs = await eventually(scored, timeout=90)
        assert runs["base"]["items"] == ITEMS and runs["base"]["dataset_version"] == 1
        per_item = await pool.fetch(
            "SELECT item_id, count(*) AS n FROM dataset_runs WHERE project_id = $1 AND app_version = 'base' GROUP BY 1",
            project.id,
        )
        assert len(per_item) == ITEMS and {r["n"] for r in per_item} == {1}

        # paired by item: the small shift is found both ways, with the number of pairs
        paired = (
            await query.get("/api/v1/compare", params={"kind": "app", "a": "base", "b": "better", "dataset": "qa"})
        ).json()
        assert paired["pairs"] == ITEMS
        found = _verdict(paired, "score:quality")
        assert (found["test"], found["verdict"], found["pairs"]) == ("wilcoxon_signed_rank", "b_better", ITEMS)
        worse = (
            await query.get("/api/v1/compare", params={"kind": "app", "a": "base", "b": "worse", "dataset": "qa"})
        ).json()
        assert _verdict(worse, "score:quality")["verdict"] == "b_worse"
        assert _verdict(worse, "run_error_rate")["test"] == "mcnemar"
        # the same scores unpaired (the engine's rank test on the two versions' values): the items'
        # own spread hides the shift at this size
        values = {
            v: [
                r["value"]
                for r in await pool.fetch(
                    "SELECT s.value FROM dataset_runs d JOIN scores s ON s.trace_id = d.trace_id "
                    "WHERE d.project_id = $1 AND d.app_version = $2 AND s.name = 'quality'",
                    project.id,
                    v,
                )
            ]
            for v in ("base", "better")
        }
        loose = mann_whitney_u(BinnedSample.of_values(values["base"]), BinnedSample.of_values(values["better"]))
        assert len(values["base"]) == len(values["better"]) == ITEMS
        assert loose.p_value > 0.05 and found["p_value"] < 0.001

        # an edited item is a new version; a later run pins it, the earlier run keeps the old one
        edited = client.add_items("qa", [{"id": "q7", "input": {"q": 7, "base": 0.5}, "expected_output": "ok"}])
        assert edited == [{"id": "q7", "version": 2}]
        assert [i["id"] for i in client.dataset_items("qa", not_run_by="base")] == ["q7"]
        await asyncio.to_thread(client.run_dataset, "qa", _task(0.0), "edited", [quality], 8)
        runs = await eventually(lambda: _runs_with(query, "edited"), timeout=60)
        assert runs["edited"]["item_versions"]["q7"] == 2 and runs["base"]["item_versions"]["q7"] == 1

        # a production run becomes a test case
        traces = (await query.get("/api/v1/traces", params={"app_version": "worse", "limit": 2})).json()["traces"]
        created = await query.post("/api/v1/datasets", json={"name": "failures"})
        assert created.status_code == 201
        made = await query.post(
            "/api/v1/datasets/failures/items", json={"from_runs": {"trace_ids": [t["trace_id"] for t in traces]}}
        )
        assert made.status_code == 201, made.text
        items = (await query.get("/api/v1/datasets/failures/items")).json()["items"]
        assert {i["source_trace_id"] for i in items} == {t["trace_id"] for t in traces}
        assert all(isinstance(i["input"], dict) and "base" in i["input"] for i in items)
        assert (await query.post("/api/v1/datasets", json={"name": "failures"})).status_code == 409
        assert (await query.get("/api/v1/datasets/nope/items")).status_code == 404
        bad = await query.post("/api/v1/datasets/qa/items", json=[{"expected_output": "no input"}])
        assert bad.status_code == 400
    finally:
        client.close()
        await query.aclose()


async def _runs_with(query: httpx.AsyncClient, version: str) -> dict[str, Any] | None:
    runs = {r["version_name"]: r for r in (await query.get("/api/v1/datasets/qa/runs")).json()["runs"]}
    return runs if runs.get(version, {}).get("items") == ITEMS else None
