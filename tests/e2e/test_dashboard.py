"""The dashboard in a real browser (chromium through playwright), against `vane up --demo`, through
the gateway: the numbers shown are the API's, compare shows its verdicts, the time series its
deployment markers, a weight slider re-ranks, promoting moves the label, a bad key is refused.
Screenshots of every page go to tests/artefacts/dashboard/."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from services.cli import demo
from services.cli.embedded import free_port
from tests.conftest import Infra
from tests.e2e.test_vane_up import PORT_VARIABLES, VaneUp
from tests.support.browser import chromium_path
from tests.support.processes import REPO

ARTEFACTS = REPO / "tests" / "artefacts" / "dashboard"
APP = "demo-chatbot"
PROMPT = "support-reply"
BASELINE, CONCISE = "gpt-4o-baseline", "gpt-4o-concise-prompt"


class Stack:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()


def _settled(stack: Stack, timeout: float = 60.0) -> None:
    """Until every score the demo posted has joined its run (the demo waits for the runs only)."""
    posted = Counter(str(s["name"]) for s in demo._scores(demo.demo_generations()))
    deadline = time.monotonic() + timeout
    while True:
        joined: Counter[str] = Counter()
        for row in stack.get("/api/v1/versions/metrics")["versions"]:
            joined.update({name: s["count"] for name, s in row["scores"].items()})
        if joined == posted:
            return
        assert time.monotonic() < deadline, f"scores joined {joined}, posted {posted}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, infra: Infra) -> Iterator[Stack]:
    env = {**infra.env(), **{name: str(free_port()) for name in PORT_VARIABLES}}
    up = VaneUp(tmp_path_factory.mktemp("dashboard"), env, "--demo")
    try:
        output = up.wait_for("Press Ctrl-C to stop.", timeout=150)
        assert "demo workload loaded" in output, output
        url = f"http://127.0.0.1:{env['VANE_GATEWAY_PORT']}"
        assert f"Vane is up at {url}" in output
        key = re.search(r"export VANE_SECRET_KEY=(sk-vane-\S+)", output)
        assert key is not None
        stack = Stack(url, key.group(1))
        _settled(stack)
        yield stack
    finally:
        up.proc.terminate()
        try:
            up.proc.wait(timeout=40)
        except Exception:
            up.proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="Asia/Tokyo")
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(stack.url + "/")
    yield p
    context.close()
    assert not errors, errors


def _open(page: Page, fragment: str) -> None:
    page.goto(page.url.split("#")[0] + "#/" + fragment)
    expect(page.locator("#view")).to_have_attribute("data-state", "ready", timeout=15000)


def _shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def _cell(page: Page, table: str, row: str, field: str) -> Any:
    return page.locator(f'#{table} tr[data-row="{row}"] td[data-field="{field}"]')


def test_a_bad_key_is_refused_with_a_message_and_the_right_one_signs_in(page: Page, stack: Stack) -> None:
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key", "sk-vane-" + "0" * 64)
    page.click("#key-submit")
    expect(page.locator("#key-error")).to_contain_text("refused")
    expect(page.locator("#key-dialog")).to_be_visible()
    _shot(page, "sign-in-refused")
    page.fill("#key", stack.key)
    page.click("#key-submit")
    expect(page.locator("#key-dialog")).to_be_hidden()
    expect(page.locator("#project")).to_have_text("project local")
    assert stack.key not in page.url
    assert page.evaluate("sessionStorage.getItem('vane.secret_key')") == stack.key


def test_the_versions_page_shows_each_app_versions_figures_as_the_api_gives_them(page: Page, stack: Stack) -> None:
    _open(page, "")
    rows = stack.get("/api/v1/versions/metrics")["versions"]
    assert {r["version"] for r in rows} == {BASELINE, CONCISE}
    table = f"versions-{APP}"
    for row in rows:
        version = row["version"]
        expect(_cell(page, table, version, "generation_count")).to_have_text(f"{row['generation_count']:,}")
        expect(_cell(page, table, version, "p95_latency_ms")).to_have_text(f"{round(row['p95_latency_ms']):,} ms")
        expect(_cell(page, table, version, "median_input_tokens")).to_have_text(f"{row['median_input_tokens']:,} tok")
        for field in ("median_latency_ms", "p99_latency_ms", "median_ttft_ms", "total_cost", "mean_cost", "error_rate"):
            shown = _cell(page, table, version, field).get_attribute("data-value")
            assert shown is not None and float(shown) == pytest.approx(row[field], rel=1e-12), field
        helpfulness = row["scores"]["helpfulness"]
        expect(_cell(page, table, version, "score:helpfulness")).to_contain_text(f"(n {helpfulness['count']:,})")
    expect(page.locator("#zone")).to_contain_text("Asia/Tokyo")
    by_volume = sorted(rows, key=lambda r: r["generation_count"], reverse=True)
    page.click(f'#{table} th[data-field="generation_count"]')  # numbers sort largest first
    expect(page.locator(f"#{table} tbody tr").first).to_have_attribute("data-row", by_volume[0]["version"])
    page.click(f'#{table} th[data-field="generation_count"]')
    expect(page.locator(f"#{table} tbody tr").first).to_have_attribute("data-row", by_volume[-1]["version"])
    _shot(page, "versions")


def test_the_prompt_page_shows_its_versions_labels_history_and_diff(page: Page, stack: Stack) -> None:
    _open(page, f"prompt/{PROMPT}")
    metrics = {r["version"]: r for r in stack.get(f"/api/v1/prompts/{PROMPT}/metrics")["versions"]}
    for version, row in metrics.items():
        shown = _cell(page, "prompt-versions", str(version), "generation_count")
        expect(shown).to_have_text(f"{row['generation_count']:,}")
    expect(_cell(page, "prompt-versions", "2", "labels")).to_contain_text("production")
    history = stack.get(f"/api/v1/prompts/{PROMPT}/label-history")["history"]
    expect(page.locator("#label-history tbody tr")).to_have_count(len(history))
    expect(page.locator("#diff pre .add")).not_to_have_count(0)
    _shot(page, "prompt")


def test_the_time_series_chart_draws_each_version_with_the_deployment_markers(page: Page, stack: Stack) -> None:
    _open(page, f"timeseries?kind=prompt&name={PROMPT}")
    body = stack.get(f"/api/v1/prompts/{PROMPT}/timeseries")
    chart = page.locator("#timeseries-chart")
    expect(chart).to_have_attribute("data-drawn", "true")
    expect(chart).to_have_attribute("data-markers", str(len(body["markers"])))
    assert len(body["markers"]) >= 2
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.locator("#markers tbody tr")).to_have_count(len(body["markers"]))
    expect(page.locator("#markers")).to_contain_text("production: ∅ → 2")
    for series in body["series"]:
        expect(chart.locator(".u-legend")).to_contain_text(f"version {series['version']}")
    _shot(page, "timeseries")


def test_compare_shows_every_metrics_verdict_interval_and_p_value(page: Page, stack: Stack) -> None:
    _open(page, f"compare?kind=app&project_name={APP}&a={BASELINE}&b={CONCISE}")
    body = stack.get("/api/v1/compare", kind="app", project_name=APP, a=BASELINE, b=CONCISE)
    expect(page.locator("#comparison tbody tr")).to_have_count(len(body["metrics"]))
    for c in body["metrics"]:
        row = page.locator(f'#comparison tr[data-row="{c["metric"]}|{c["statistic"]}"]')
        expect(row.locator("[data-verdict]")).to_have_attribute("data-verdict", c["verdict"])
        if c["p_value"] is not None:
            assert float(row.locator('td[data-field="p_value"]').get_attribute("data-value") or "nan") == c["p_value"]
    latency = page.locator('#comparison tr[data-row="latency_ms|median"]')
    expect(latency.locator("[data-verdict]")).to_have_text("B better")
    expect(latency.locator('td[data-field="ci95"]')).to_contain_text("ms")
    _shot(page, "compare")


def test_a_weight_slider_re_ranks_the_versions_as_the_api_does(page: Page, stack: Stack) -> None:
    _open(page, f"winner?kind=app&project_name={APP}")
    expect(page.locator("#ranking tbody tr")).to_have_count(2)
    for metric in ("score:helpfulness", "score:thumbs_up", "latency_ms", "cost"):
        page.locator(f'input[data-metric="{metric}"]').fill("0")
    page.locator('input[data-metric="latency_ms"]').fill("10")
    expect(page.locator('#ranking tr[data-row] td[data-field="rank"]').first).to_have_text("1")
    expect(page.locator("#ranking tbody tr").first).to_have_attribute("data-row", CONCISE)
    api = stack.http.post("/api/v1/winner", json={"kind": "app", "project_name": APP, "weights": {"latency_ms": 10}})
    assert api.json()["ranking"][0]["version"] == CONCISE
    _shot(page, "winner-latency")
    page.locator('input[data-metric="latency_ms"]').fill("0")
    page.locator('input[data-metric="input_tokens"]').fill("10")
    weights = {"input_tokens": 10}
    expected = stack.http.post("/api/v1/winner", json={"kind": "app", "project_name": APP, "weights": weights})
    top = expected.json()["ranking"][0]["version"]
    assert top == BASELINE  # its prompts are a few tokens shorter: the ranking turned over
    expect(page.locator("#ranking tbody tr").first).to_have_attribute("data-row", top)


def test_the_runs_explorer_lists_runs_and_opens_a_trace_with_its_scores(page: Page, stack: Stack) -> None:
    _open(page, f"runs?app_version={CONCISE}")
    runs = stack.get("/api/v1/runs", app_version=CONCISE, limit=50)["runs"]
    expect(page.locator("#runs tbody tr")).to_have_count(len(runs))
    first = runs[0]
    latency = _cell(page, "runs", first["span_id"], "latency_ms").get_attribute("data-value")
    assert latency is not None and float(latency) == pytest.approx(first["latency_ms"], rel=1e-12)
    # a demo run is a trace of five spans; its scores are on the reply
    scored = next(r for r in runs if any(s["scores"] for s in stack.get(f"/api/v1/runs/{r['trace_id']}")["spans"]))
    _open(page, f"runs/{scored['trace_id']}")
    trace = stack.get(f"/api/v1/runs/{scored['trace_id']}")
    expect(page.locator("#trace-spans tbody tr")).to_have_count(len(trace["spans"]))
    for s in next(s for s in trace["spans"] if s["scores"])["scores"]:
        expect(page.locator("#trace-spans")).to_contain_text(s["name"])
    _shot(page, "trace")


def test_experiments_and_alerts_say_what_to_do_when_there_are_none(page: Page) -> None:
    _open(page, "experiments")
    expect(page.locator(".empty h2")).to_have_text(re.compile("No experiments yet|not served here yet"))
    _shot(page, "experiments")
    _open(page, "alerts")
    expect(page.locator(".empty h2").first).to_have_text(re.compile("No alert rules yet|not served here yet"))
    _shot(page, "alerts")


def test_the_theme_switches_between_light_and_dark(page: Page) -> None:
    _open(page, "")
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme")
    expect(page.locator("#view")).to_have_attribute("data-state", "ready")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != before
    _shot(page, "versions-other-theme")
    page.click("#theme")


def test_promoting_a_version_moves_the_label_in_the_registry(page: Page, stack: Stack) -> None:
    _open(page, f"prompt/{PROMPT}")
    page.select_option("#promote-version", "1")
    page.fill("#promote-label", "production")
    page.click("#promote")
    expect(page.locator("#promote-status")).to_contain_text("production now on v1")
    assert stack.get(f"/api/v1/prompts/{PROMPT}", label="production")["version"] == 1
    expect(_cell(page, "prompt-versions", "1", "labels")).to_contain_text("production")
    _shot(page, "prompt-promoted")


def test_the_page_and_its_assets_are_served_without_a_key_and_load_nothing_from_elsewhere(stack: Stack) -> None:
    page = httpx.get(stack.url + "/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in re.sub(r"<p>.*?</p>", "", page.text, flags=re.S).replace("http-equiv", "")
    for asset in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text):
        assert httpx.get(stack.url + asset, timeout=5).status_code == 200, asset
    assert Path(REPO / "services/aggregator/dashboard/static/vendor/uPlot.LICENSE").exists()
