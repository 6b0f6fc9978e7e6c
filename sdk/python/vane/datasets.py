"""Datasets from code: create them, add items, and run an app version over one (`run_dataset`).

A run of an item is a trace of the app's own function, its root span carrying vane.dataset.name,
.item_id and .item_version, exported under the run's app version (`version_name`). A run resumes:
the items that version already ran are skipped. Scores come from local evaluators (functions given
the input, the output and the expected output) posted at once, and from the evaluator service for
each EvalTag given (it scores the spans as they arrive).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import statistics
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from opentelemetry.trace import Status, StatusCode

from vane.deciding import ExperimentsMixin
from vane.http_json import call
from vane.tracing_register import EvalTag, register

Evaluator = Callable[..., float | bool] | EvalTag


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


class DatasetsMixin(ExperimentsMixin):
    def create_dataset(self, name: str, description: str = "") -> dict[str, Any]:
        body: dict[str, Any] = self._query("POST", "/api/v1/datasets", body={"name": name, "description": description})
        return body

    def add_items(self, name: str, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Items {"input", "id"?, "expected_output"?, "metadata"?}; an existing id gets a new version."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(items), 1000):
            body = self._query(
                "POST", f"/api/v1/datasets/{quote(name, safe='')}/items", body=list(items[start : start + 1000])
            )
            found.extend(body["items"])
        return found

    def add_items_from_runs(self, name: str, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        """An item per stored run (its input, its output as the expected output)."""
        path = f"/api/v1/datasets/{quote(name, safe='')}/items"
        items: list[dict[str, Any]] = self._query("POST", path, body={"from_runs": {"trace_ids": list(trace_ids)}})[
            "items"
        ]
        return items

    def dataset_items(self, name: str, not_run_by: str | None = None) -> list[dict[str, Any]]:
        path = f"/api/v1/datasets/{quote(name, safe='')}/items"
        items: list[dict[str, Any]] = self._query("GET", path, params={"not_run_by": not_run_by})["items"]
        return items

    def dataset_runs(self, name: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self._query("GET", f"/api/v1/datasets/{quote(name, safe='')}/runs")["runs"]
        return runs

    def run_dataset(
        self,
        name: str,
        task: Callable[[Any], Any],
        version_name: str,
        evaluators: Sequence[Evaluator] = (),
        concurrency: int = 8,
        project_name: str = "datasets",
        progress: bool = True,
    ) -> dict[str, Any]:
        """Call `task(input)` (sync or async) on every item this version has not run, at most
        `concurrency` at once; returns {"items", "errors", "skipped", "scores"}."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        all_items = self.dataset_items(name)
        todo = self.dataset_items(name, not_run_by=version_name)
        local = [e for e in evaluators if not isinstance(e, EvalTag)]
        tags = [e for e in evaluators if isinstance(e, EvalTag)]
        provider = register(
            project_name=project_name,
            project_version_name=version_name,
            eval_tags=tags,
            secret_key=self.config.secret_key,
            endpoint=self.config.otlp_endpoint,
            set_global_tracer_provider=False,
        )
        tracer = provider.get_tracer("vane.datasets")
        lock = threading.Lock()
        scores: dict[str, list[float]] = {}
        errors = done = 0

        def record(item: dict[str, Any], output: Any, span: Any) -> None:
            context = span.get_span_context()
            for evaluator in local:
                score_name = getattr(evaluator, "__name__", "score")
                value = evaluator(input=item["input"], output=output, expected=item.get("expected_output"))
                body = {
                    "id": str(uuid.uuid4()),
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                    "name": score_name,
                    "value": value,
                    "source": "eval",
                }
                call("POST", self.config.api_url, "/api/v1/scores", self.config.secret_key, body)
                with lock:
                    scores.setdefault(score_name, []).append(float(value))

        def attributes(item: dict[str, Any]) -> dict[str, Any]:
            expected = item.get("expected_output")
            return {
                "openinference.span.kind": "CHAIN",
                "input.value": _text(item["input"]),
                **({"vane.dataset.expected_output": _text(expected)} if expected is not None else {}),
            }

        def settle(item: dict[str, Any], span: Any, output: Any = None, error: Exception | None = None) -> None:
            """An item's span once its task returned or failed: the output or the error, then the
            item's ids. They are set only now: a run cut off by an interrupt (or a kill) is no run of
            the item, so a resumed run does it again."""
            if error is None:
                span.set_attribute("output.value", _text(output))
            else:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.set_attribute("vane.dataset.name", name)
            span.set_attribute("vane.dataset.item_id", item["id"])
            span.set_attribute("vane.dataset.item_version", item["version"])

        def finished(ok: bool) -> None:
            nonlocal errors, done
            with lock:
                done += 1
                errors += 0 if ok else 1
                if progress and (done % 50 == 0 or done == len(todo)):
                    line = f"\r{name} × {version_name}: {done}/{len(todo)} items, {errors} errors"
                    print(line, end="", file=sys.stderr)

        stopping = threading.Event()  # an interrupt in one item stops the items not begun

        def run_sync(item: dict[str, Any]) -> None:
            if stopping.is_set():
                return
            with tracer.start_as_current_span("dataset-item", attributes=attributes(item)) as span:
                try:
                    output = task(item["input"])
                except Exception as exc:
                    settle(item, span, error=exc)
                    finished(False)
                    return
                except BaseException:
                    stopping.set()
                    raise
                settle(item, span, output)
            record(item, output, span)
            finished(True)

        async def run_async(item: dict[str, Any], gate: asyncio.Semaphore) -> None:
            async with gate:
                if stopping.is_set():
                    return
                with tracer.start_as_current_span("dataset-item", attributes=attributes(item)) as span:
                    try:
                        output = await task(item["input"])
                    except Exception as exc:
                        settle(item, span, error=exc)
                        finished(False)
                        return
                    except BaseException:
                        stopping.set()
                        raise
                    settle(item, span, output)
                await asyncio.to_thread(record, item, output, span)
                finished(True)

        try:
            if inspect.iscoroutinefunction(task):

                async def run_all() -> None:
                    gate = asyncio.Semaphore(concurrency)
                    await asyncio.gather(*(run_async(item, gate) for item in todo))

                asyncio.run(run_all())
            else:
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(run_sync, todo))
        finally:
            provider.force_flush()
            provider.shutdown()
            if progress and todo:
                print(file=sys.stderr)
        return {
            "items": done,
            "errors": errors,
            "skipped": len(all_items) - len(todo),
            "scores": {
                n: {"count": len(v), "mean": statistics.fmean(v), "median": statistics.median(v)}
                for n, v in sorted(scores.items())
            },
        }
