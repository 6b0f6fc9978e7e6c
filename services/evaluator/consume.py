"""The live path: span messages from the spans stream, evaluated concurrently, each acked only after
its outcomes are recorded and its scores published.

Per message: decode → plan each span's evaluations → skip those the ledger already holds →
evaluate the rest at once → record → publish → ack. While the judge is down, the span is nak'ed
and comes back with a growing delay; once its delivery budget is spent, the failure is recorded
as an error score instead. Hundreds of messages are in flight, so a slow judge never stalls the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from vane.v1 import bus_pb2

from services.common.bus import Bus, Topology
from services.common.logs import get_logger
from services.common.payload import CorruptPayload, payload_of
from services.evaluator import metrics, records
from services.evaluator.config import EvaluatorConfig
from services.evaluator.evaluate import Evaluators
from services.evaluator.outcomes import JudgeUnavailable, Outcome
from services.evaluator.project_rules import RuleCache
from services.evaluator.publish import publish_scores
from services.evaluator.records import Evaluation
from services.evaluator.selection import Planned, plan, unknown_tag_names
from services.evaluator.spans import SpanView, from_proto

log = get_logger(component="evaluator.consume")
KNOWN_SCHEMA_VERSIONS = {1}
KEEP_ALIVE_SECONDS = 30.0  # well inside the consumer's 120 s ack_wait
MAX_FETCH = 256


class PoisonMessage(Exception):
    """A message that can never be processed: it goes to the dead letters, with the reason."""


@dataclass(frozen=True)
class Verdict:
    """What becomes of a message: acked, or nak'ed to come back after `retry_in` seconds."""

    retry_in: float | None = None


class SpanConsumer:
    def __init__(
        self, bus: Bus, pool: asyncpg.Pool, evaluators: Evaluators, rules: RuleCache, config: EvaluatorConfig
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.evaluators = evaluators
        self.rules = rules
        self.config = config

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch while there is room in flight; on stop, finish what is in flight."""
        stream = self.bus.topology.spans_stream
        sub = await self.bus.js.pull_subscribe_bind(durable=Topology.EVALUATOR_SPANS, stream=stream)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stopping.is_set():
                room = self.config.max_in_flight - len(tasks)
                if room <= 0:
                    await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=min(room, MAX_FETCH), timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception as exc:  # connection lost: the client reconnects on its own
                    log.warning("fetch_failed", error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self.handle(msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def handle(self, msg: Msg) -> None:
        """Process one message to its end: ack, nak with a delay, or dead-letter."""
        metrics.IN_FLIGHT.inc()
        keep_alive = asyncio.create_task(_keep_alive(msg))
        try:
            verdict = await self.process(payload_of(msg), _deliveries(msg))
            if verdict.retry_in is None:
                await msg.ack()
                metrics.MESSAGES.labels(result="acked").inc()
            else:
                await msg.nak(delay=verdict.retry_in)
                metrics.MESSAGES.labels(result="retried").inc()
        except (PoisonMessage, CorruptPayload) as exc:
            await self.bus.dead_letter(self.bus.topology.spans_stream, msg, str(exc))
            await msg.ack()
            metrics.MESSAGES.labels(result="dead_lettered").inc()
        except Exception as exc:  # Postgres or NATS trouble: nothing was acked, try again shortly
            log.warning("message_failed", error=repr(exc))
            metrics.MESSAGES.labels(result="failed").inc()
            with contextlib.suppress(Exception):
                await msg.nak(delay=2.0)
        finally:
            keep_alive.cancel()
            metrics.IN_FLIGHT.dec()

    async def process(self, data: bytes, deliveries: int) -> Verdict:
        """Evaluate a SpanBatch's spans; record and publish what finished. Raises PoisonMessage."""
        spans = _decode(data)
        work = [(span, planned) for span in spans for planned in await self._plan(span)]
        if not work:
            return Verdict()
        done = await records.recorded(self.pool, [p.score_id(s) for s, p in work])
        todo = [(s, p) for s, p in work if p.score_id(s) not in done]
        outcomes = await asyncio.gather(*(self._evaluate(s, p) for s, p in todo))
        last_chance = deliveries >= self.config.max_deliveries
        finished: list[Evaluation] = []
        waiting = 0
        for (span, planned), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, JudgeUnavailable) and not last_chance:
                waiting += 1
                continue
            if isinstance(outcome, JudgeUnavailable):
                outcome = Outcome.failed(f"{outcome} (span delivered {deliveries} times)", outcome.attempts)
            finished.append(Evaluation.of(span, planned, outcome))
        try:
            stored = await records.record(self.pool, finished)
        except asyncpg.ForeignKeyViolationError as exc:
            raise PoisonMessage(f"the span's project does not exist: {exc}") from None
        for evaluation in stored:
            metrics.EVALUATIONS.labels(evaluator=evaluation.evaluator, status=evaluation.status).inc()
            if evaluation.status == "error":
                metrics.EVALUATION_ERRORS.labels(evaluator=evaluation.evaluator).inc()
        # Two sets, so that a redelivery republishes what it found done under the message ids it had.
        await asyncio.gather(publish_scores(self.bus, list(done.values())), publish_scores(self.bus, stored))
        if waiting:
            delay = min(120.0, self.config.redelivery_delay_seconds * 2 ** max(0, deliveries - 1))
            log.info("judge_unavailable_retry_later", evaluations=waiting, deliveries=deliveries, retry_in=delay)
            return Verdict(retry_in=delay)
        return Verdict()

    async def _plan(self, span: SpanView) -> list[Planned]:
        for name in unknown_tag_names(span):
            metrics.UNKNOWN_EVALUATORS.labels(name=name[:60]).inc()
        rules = await self.rules.rules_for(span.project_id)
        return plan(span, rules)

    async def _evaluate(self, span: SpanView, planned: Planned) -> Outcome | JudgeUnavailable:
        try:
            return await self.evaluators.run(span.project_id, planned)
        except JudgeUnavailable as exc:
            return exc
        except Exception as exc:  # a bug must not redeliver a span for ever: record it as the reason
            log.exception("evaluation_crashed", evaluator=planned.spec.name, error=repr(exc))
            return Outcome.failed(f"internal error in {planned.spec.name}: {exc!r}")


def _decode(data: bytes) -> Sequence[SpanView]:
    try:
        batch = bus_pb2.SpanBatch.FromString(data)
    except DecodeError as exc:
        raise PoisonMessage(f"not a SpanBatch: {exc}") from None
    if batch.schema_version not in KNOWN_SCHEMA_VERSIONS:
        raise PoisonMessage(f"unknown SpanBatch schema_version {batch.schema_version}")
    spans = []
    for span in batch.spans:
        view = from_proto(span, batch.project_id)
        try:
            view.project_uuid  # noqa: B018 - a span without a valid project cannot be scored
        except ValueError:
            raise PoisonMessage(f"span without a valid project id: {view.project_id!r}") from None
        spans.append(view)
    metrics.SPANS.inc(len(spans))
    return spans


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:
        return 1


async def _keep_alive(msg: Msg) -> None:
    """Tell JetStream the message is being worked on, so that a slow judge does not cause a redelivery."""
    while True:
        await asyncio.sleep(KEEP_ALIVE_SECONDS)
        with contextlib.suppress(Exception):
            await msg.in_progress()
