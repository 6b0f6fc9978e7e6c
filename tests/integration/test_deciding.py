"""Deciding through the real aggregator: compare finds the effect that was put into the data and
no other, a score's configured direction is honoured, and winner ranks with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import vane
from click.testing import CliRunner

from services.cli.main import cli
from services.common.bus import Bus
from tests.support.aggregator_load import STREAM_MAX_BYTES, eventually, make_load, publish_scores, publish_spans

pytestmark = pytest.mark.slow

N = 4_000


def _verdicts(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["metric"], c["statistic"]): c["verdict"] for c in body["metrics"]}


async def test_compare_and_winner_find_the_planted_effect_and_honour_a_lower_is_better_score(
    make_project: Callable[..., Any], start_service: Callable[..., Any], bus: Bus, namespace: str
) -> None:
    project = await make_project()
    load = make_load(project.id, N, score_every=1)
    # Planted: the "concise" app version is 40% slower on every run and is scored one point higher
    # on toxicity (configured lower-is-better); prompt version 2 costs 40% less than version 1.
    concise = {s.span_id for s in load.spans if s.app_version == "concise"}
    for span in load.spans:
        if span.prompt_version == 2:
            span.cost *= 0.6
        if span.span_id in concise:
            span.end_time_unix_nano = span.start_time_unix_nano + int(
                (span.end_time_unix_nano - span.start_time_unix_nano) * 1.4
            )
    for score in load.scores:
        score.name = "toxicity"
        score.value = min(5.0, score.value + 1) if score.span_id in concise else score.value

    env = {"VANE_NAMESPACE": namespace, "VANE_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES)}
    ingest, aggregator = start_service("ingest", **env), start_service("aggregator", **env)
    registry = start_service("registry", **env)
    async with httpx.AsyncClient(base_url=ingest.url, headers=project.bearer, timeout=10) as http:
        config = {"name": "toxicity", "data_type": "numeric", "min_value": 1, "max_value": 5, "direction": "lower"}
        created = await http.post("/api/v1/score-configs", json=config)
        assert created.status_code == 201 and created.json()["direction"] == "lower"
        bad = await http.post("/api/v1/score-configs", json={**config, "direction": "sideways"})
        assert bad.status_code == 400 and "direction" in bad.text
    await publish_spans(bus, project.id, load.spans)
    await publish_scores(bus, load.scores)

    async with httpx.AsyncClient(base_url=aggregator.url, headers=project.bearer, timeout=20) as http:

        async def settled() -> bool:
            rows = (await http.get("/api/v1/versions/metrics")).json()["versions"]
            return sum(r["scores"].get("toxicity", {}).get("count", 0) for r in rows) == N

        await eventually(settled, timeout=90)

        apps = (await http.get("/api/v1/compare", params={"kind": "app", "a": "baseline", "b": "concise"})).json()
        assert (apps["a"]["version"], apps["b"]["version"]) == ("baseline", "concise")
        assert apps["a"]["n"] == apps["b"]["n"] == N // 2
        verdicts = _verdicts(apps)
        assert verdicts[("latency_ms", "median")] == "b_worse"
        assert verdicts[("latency_ms", "p95")] == "b_worse"
        assert verdicts[("score:toxicity", "median")] == "b_worse"
        for untouched in (("input_tokens", "median"), ("output_tokens", "median")):
            # alike: never a verdict either way (equivalence within 5% may need more runs than these)
            assert verdicts[untouched] in ("no_difference", "not_enough_data"), untouched
        latency = next(c for c in apps["metrics"] if (c["metric"], c["statistic"]) == ("latency_ms", "median"))
        assert latency["test"] == "mann_whitney_u" and latency["better"] == "lower"
        low, high = latency["ci95"]
        assert low <= latency["difference"] <= high and low > 0
        assert abs(latency["relative_difference"] - 0.4) < 0.1
        toxicity = next(c for c in apps["metrics"] if c["metric"] == "score:toxicity")
        assert toxicity["better"] == "lower"
        errors = next(c for c in apps["metrics"] if c["metric"] == "error_rate")
        assert errors["statistic"] == "rate" and errors["test"] in ("two_proportion_z", "fisher_exact")

        prompts = await http.get("/api/v1/compare", params={"kind": "prompt", "name": "support-reply", "a": 1, "b": 2})
        verdicts = _verdicts(prompts.json())
        assert verdicts.pop(("cost", "median")) == "b_better"
        assert set(verdicts.values()) <= {"no_difference", "not_enough_data"}

        missing = await http.get("/api/v1/compare", params={"kind": "app", "a": "baseline", "b": "nope"})
        assert missing.status_code == 404
        assert (await http.get("/api/v1/compare", params={"kind": "prompt", "a": 1, "b": 2})).status_code == 400

        weights = {"latency_ms": 2, "score:toxicity": 1, "cost": 1}
        ranked = (await http.post("/api/v1/winner", json={"kind": "app", "weights": weights})).json()
        assert ranked["winner"] == "baseline" and ranked["clear"] is True
        assert [r["version"] for r in ranked["ranking"]] == ["baseline", "concise"]
        top = ranked["ranking"][0]
        assert top["contributions"]["latency_ms"] == pytest.approx(0.5) and top["rank"] == 1
        # on the untouched metrics alone, the two are not apart: no winner
        alike = (await http.post("/api/v1/winner", json={"kind": "app", "weights": {"output_tokens": 1}})).json()
        assert alike["winner"] is None and alike["clear"] is False and alike["reason"]
        wrong = await http.post("/api/v1/winner", json={"kind": "app", "weights": {"latency": 1}})
        assert wrong.status_code == 400 and "latency" in wrong.text

        # the SDK: the same answers as typed objects
        client = vane.Vane(secret_key=project.keys.secret_key, query_url=aggregator.url)
        compared = client.compare("baseline", "concise", kind="app")
        assert compared.metric("latency_ms", "p95").verdict == "b_worse" and compared.n_b == N // 2
        assert client.winner({"cost": 1}, name="support-reply").winner == 2
        series = client.timeseries("app", interval="hour", metrics=["generation_count"])
        assert sum(p["generation_count"] for s in series.series for p in s.points) == N
        with pytest.raises(vane.ApiError, match="latency"):
            client.winner({"latency": 1}, kind="app")

    # the same compare over NATS, as the registry's rollouts ask it (only the metrics asked for)
    ask = {"project_id": str(project.id), "kind": "app", "a": "baseline", "b": "concise", "metrics": ["latency_ms"]}
    reply = json.loads((await bus.nc.request(bus.topology.compare_subject, json.dumps(ask).encode(), timeout=10)).data)
    assert {(c["metric"], c["verdict"]) for c in reply["metrics"]} == {("latency_ms", "b_worse")}
    ask["b"] = "nope"
    reply = json.loads((await bus.nc.request(bus.topology.compare_subject, json.dumps(ask).encode(), timeout=10)).data)
    assert reply["error"]["code"] == "not_found"

    # the CLI: tables, --json, and --promote only for a clear winner
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as api:
        for text in ("Hello {{name}}", "Hi {{name}}"):
            assert (
                await api.post("/api/v1/prompts", json={"name": "support-reply", "prompt": text})
            ).status_code == 201
    runner = CliRunner(env={"COLUMNS": "200"})
    keys = ["--url", aggregator.url, "--secret-key", project.keys.secret_key]
    table = runner.invoke(cli, ["compare", "--kind", "app", *keys, "baseline", "concise"])
    assert table.exit_code == 0, table.output
    assert "latency_ms" in table.output and "b_worse" in table.output
    as_json = runner.invoke(cli, ["compare", "--kind", "app", "--json", *keys, "baseline", "concise"])
    assert json.loads(as_json.output)["b"]["version"] == "concise"
    promote = ["--registry-url", registry.url, "--promote", "production"]
    refused = runner.invoke(cli, ["winner", "--name", "support-reply", "--weight", "output_tokens=1", *keys, *promote])
    assert refused.exit_code != 0 and "not promoting" in refused.output
    promoted = runner.invoke(cli, ["winner", "--name", "support-reply", "--weight", "cost=1", *keys, *promote])
    assert promoted.exit_code == 0, promoted.output
    assert "support-reply version 2 now carries production" in promoted.output
    async with httpx.AsyncClient(base_url=registry.url, headers=project.bearer, timeout=10) as api:
        version = (await api.get("/api/v1/prompts/support-reply", params={"label": "production"})).json()
        assert version["version"] == 2
