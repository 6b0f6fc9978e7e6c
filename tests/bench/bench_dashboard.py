"""Dashboard benchmark: each page's first contentful paint and its time to data (the view filled
from the API; for the time series, the chart drawn) in chromium, with 100 versions and 30 days of
rollups loaded directly (as bench_aggregator's query benchmark loads them).

    .venv/bin/python -m tests.bench.bench_dashboard [--generations 1000000] [--loads 5]

Uses the machine's NATS and Postgres with a database and namespace of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from services.common import db
from services.common.auth import create_project
from services.common.settings import Settings
from tests.bench.bench_aggregator import _load_rollups
from tests.support.browser import chromium_path
from tests.support.processes import ServiceProcess
from tests.support.scratch import drop_database, with_database

# Each page, the mark its data is in at (the view filled; the chart drawn; the ranking shown), and what shows it.
PAGES = {
    "versions": ("", "vane:data", "#view[data-state=ready]"),
    "prompt": ("prompt/bench", "vane:data", "#view[data-state=ready]"),
    "timeseries": ("timeseries?kind=prompt&name=bench", "vane:chart", "#timeseries-chart[data-drawn=true]"),
    "compare": ("compare?kind=prompt&name=bench&a=1&b=2", "vane:data", "#comparison"),
    "winner": ("winner?kind=prompt&name=bench", "vane:ranking", "#ranking"),
}

_TIMINGS = """(data) => {
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  const api = performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/v1/"));
  const call = (e) => `${new URL(e.name).pathname}${new URL(e.name).search.slice(0, 40)} ${e.duration.toFixed(0)} ms`;
  return {
    fcp: mark("first-contentful-paint"), data: mark(data),
    api: Math.max(0, ...api.map((e) => e.duration)), calls: api.map(call),
  };
}"""


async def _prepare(database_url: str, generations: int) -> str:
    pool = await db.create_pool(database_url, 1, 4)
    try:
        async with pool.acquire() as conn:
            project, keys = await create_project(conn, f"bench-dashboard-{secrets.token_hex(3)}")
        started = time.perf_counter()
        rows = await _load_rollups(pool, project, generations, 100, 30)
        print(f"loaded {rows:,} rollup rows (100 versions, 30 days) in {time.perf_counter() - started:.0f}s")
    finally:
        await pool.close()
    return keys.secret_key


def _measure(url: str, key: str, loads: int) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/")
        page.fill("#key", key)
        page.click("#key-submit")
        page.wait_for_selector("#view[data-state=ready]", timeout=60000)
        for name, (fragment, data_mark, shown) in PAGES.items():
            fcp, data, slowest = [], [], []
            for i in range(loads + 1):
                page.goto("about:blank")
                page.goto(f"{url}/#/{fragment}")
                page.wait_for_selector(shown, timeout=60000)
                t = page.evaluate(_TIMINGS, data_mark)
                if i == 0:
                    continue  # the first load warms the aggregator's caches
                if i == loads:
                    print(f"{name:<11} API calls of the last load: {'; '.join(t['calls'])}")
                fcp.append(t["fcp"])
                slowest.append(t["api"])
                data.append(t["data"])
            print(
                f"{name:<11} first contentful paint median {statistics.median(fcp):.0f} ms (max {max(fcp):.0f}); "
                f"time to data median {statistics.median(data):.0f} ms (max {max(data):.0f}); "
                f"its slowest API call median {statistics.median(slowest):.0f} ms over {loads} loads"
            )
        browser.close()


def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    token = secrets.token_hex(3)
    database_url = with_database(settings.database_url, f"vane_bench_{token}")
    asyncio.run(db.migrate(database_url))
    env = {
        "VANE_DATABASE_URL": database_url,
        "VANE_NATS_URL": settings.nats_url,
        "VANE_REDIS_URL": settings.redis_url,
        "VANE_NAMESPACE": f"bench{token}",
        "VANE_STREAM_MAX_BYTES": str(256 * 1024**2),
        "VANE_LOG_LEVEL": "warning",
    }
    aggregator = None
    try:
        key = asyncio.run(_prepare(database_url, args.generations))
        aggregator = ServiceProcess("aggregator", env, Path(tempfile.mkdtemp(prefix="vane-bench-"))).start()
        _measure(aggregator.url, key, args.loads)
    finally:
        if aggregator is not None:
            aggregator.kill()
        asyncio.run(drop_database(database_url))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=5)
    main(parser.parse_args())
