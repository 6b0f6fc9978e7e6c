"""The LLM judge: an OpenAI-compatible chat-completions client that is slow and fails gracefully.

Bounded concurrency (a semaphore around the HTTP call only), a per-project rate limit, a
deadline per call, and retries with exponential backoff and jitter that honour a 429's
Retry-After. What the judge answers is read by `rubrics.parse_verdict`; what it spent is priced.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from services.common.outbound import OutboundPolicy, OutboundRefused
from services.common.quotas import Quotas
from services.evaluator import metrics
from services.evaluator.config import JudgeDefaults
from services.evaluator.outcomes import EvaluationFailed, JudgeUnavailable, Outcome
from services.evaluator.rubrics import build_messages, parse_verdict

# USD per million (input, output) tokens of common judge models; config or env prices win.
PRICES: list[tuple[re.Pattern[str], float, float]] = [
    (re.compile(r"^gpt-4o-mini"), 0.15, 0.60),
    (re.compile(r"^gpt-4o"), 2.50, 10.00),
    (re.compile(r"^gpt-4\.1-nano"), 0.10, 0.40),
    (re.compile(r"^gpt-4\.1-mini"), 0.40, 1.60),
    (re.compile(r"^gpt-4\.1"), 2.00, 8.00),
    (re.compile(r"^o4-mini"), 1.10, 4.40),
    (re.compile(r"^claude-3-5-haiku|^claude-haiku"), 0.80, 4.00),
    (re.compile(r"^claude-(3-5-|3-7-)?sonnet|^claude-sonnet"), 3.00, 15.00),
]
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class Endpoint:
    url: str
    model: str
    api_key: str
    timeout_seconds: float
    input_price: float | None
    output_price: float | None


def key_from_env(name: str) -> str:
    """A judge key from the variable a rule names, only when the operator listed that variable in
    VANE_JUDGE_KEY_ENVS: a rule is written with a project's key, and must not be able to have any
    of the evaluator's variables (VANE_DATABASE_URL, …) sent to a URL of its choosing."""
    allowed = {v.strip() for v in os.environ.get("VANE_JUDGE_KEY_ENVS", "").split(",") if v.strip()}
    return os.environ.get(name, "") if name in allowed else ""


def endpoint_for(config: Mapping[str, Any], defaults: JudgeDefaults) -> Endpoint:
    """The judge a config names (base_url, model, api_key or api_key_env), else the defaults."""
    model = str(config.get("model") or defaults.model)
    key = str(config.get("api_key") or "")
    if not key and config.get("api_key_env"):
        key = key_from_env(str(config["api_key_env"]))
    listed = next(((i, o) for pattern, i, o in PRICES if pattern.search(model)), (None, None))
    input_price = config.get("input_price_per_mtok", defaults.input_price_per_mtok)
    output_price = config.get("output_price_per_mtok", defaults.output_price_per_mtok)
    base_url = str(config.get("base_url") or defaults.base_url).rstrip("/")
    # The operator's judge key goes only to the operator's judge, never to a URL a rule names.
    own_judge = base_url == defaults.base_url.rstrip("/")
    return Endpoint(
        url=base_url + "/chat/completions",
        model=model,
        api_key=key or (defaults.api_key if own_judge else ""),
        timeout_seconds=float(config.get("timeout_seconds", defaults.timeout_seconds)),
        input_price=float(input_price) if input_price is not None else listed[0],
        output_price=float(output_price) if output_price is not None else listed[1],
    )


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date), capped; None when absent."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def cost_of(endpoint: Endpoint, input_tokens: int, output_tokens: int) -> float | None:
    if endpoint.input_price is None or endpoint.output_price is None:
        return None
    return (input_tokens * endpoint.input_price + output_tokens * endpoint.output_price) / 1_000_000


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Judge:
    """One process's judge client: shared connections, one semaphore, one rate limiter per project."""

    def __init__(
        self, defaults: JudgeDefaults, policy: OutboundPolicy | None = None, quotas: Quotas | None = None
    ) -> None:
        self.defaults = defaults
        self.quotas = quotas  # judge calls per second per project, counted across every replica
        self.policy = policy or OutboundPolicy.from_env()  # where a rule's base_url may point
        self._slots = asyncio.Semaphore(defaults.concurrency)
        self._limiters: dict[str, AsyncLimiter] = {}
        self._session: aiohttp.ClientSession | None = None  # made in the running loop, on first use

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: httpx's pool collapses to tens of calls/s with hundreds in flight.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.defaults.concurrency, limit_per_host=0, resolver=self.policy.aiohttp_resolver()
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def judge(self, project_id: str, inputs: Mapping[str, str], config: Mapping[str, Any]) -> Outcome:
        """Score the inputs with the config's rubric. Raises EvaluationFailed for an answer that can
        never be a score (non-JSON, 4xx), JudgeUnavailable when every attempt failed transiently."""
        messages = build_messages(inputs, config)
        endpoint = endpoint_for(config, self.defaults)
        body = {
            "model": endpoint.model,
            "messages": messages,
            "temperature": float(config.get("temperature", 0.0)),
        }
        if config.get("json_mode", True):  # some compatible servers refuse response_format
            body["response_format"] = {"type": "json_object"}
        attempts = 1 + max(0, int(config.get("retries", self.defaults.retries)))
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                if self.quotas is not None and not await self.quotas.wait_for_judge_call(uuid.UUID(project_id)):
                    raise JudgeUnavailable("the project's judge calls are over their quota", attempt - 1)
                await self._limiter(project_id).acquire()
                answer = await self._call(endpoint, body)
                return self._outcome(endpoint, answer, attempt)
            except _Transient as exc:
                reason = str(exc)
                metrics.JUDGE_CALLS.labels(result="retryable").inc()
                if attempt == attempts:
                    break
                pause = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                await asyncio.sleep(pause)
        raise JudgeUnavailable(f"the judge failed {attempts} times; last: {reason}", attempts)

    def _limiter(self, project_id: str) -> AsyncLimiter:
        limiter = self._limiters.get(project_id)
        if limiter is None:
            rate = self.defaults.rate_per_second
            # A bucket of one second's calls: bursts up to the rate, then the rate.
            limiter = self._limiters[project_id] = AsyncLimiter(max(rate, 1.0), 1.0)
        return limiter

    def _backoff(self, attempt: int) -> float:
        base = self.defaults.backoff_seconds * 2 ** (attempt - 1)
        return float(min(self.defaults.max_backoff_seconds, base * random.uniform(0.5, 1.5)))

    async def _call(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        try:
            self.policy.split(endpoint.url)  # IP literals and metadata names; names are checked as they resolve
        except OutboundRefused as exc:
            metrics.JUDGE_CALLS.labels(result="refused").inc()
            raise EvaluationFailed(exc.message) from None
        async with self._slots:
            metrics.JUDGE_IN_FLIGHT.inc()
            started = time.perf_counter()
            try:
                timeout = aiohttp.ClientTimeout(total=endpoint.timeout_seconds)
                async with self._client().post(
                    endpoint.url, json=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    status, text = response.status, await response.text()
                    retry_after = response.headers.get("retry-after")
                    location = response.headers.get("location", "")
            except OutboundRefused as exc:
                metrics.JUDGE_CALLS.labels(result="refused").inc()
                raise EvaluationFailed(exc.message) from None
            except TimeoutError:
                raise _Transient(f"timed out after {endpoint.timeout_seconds:g}s") from None
            except aiohttp.ClientError as exc:
                raise _Transient(f"cannot reach {endpoint.url}: {exc!r}") from None
            finally:
                metrics.JUDGE_IN_FLIGHT.dec()
                metrics.JUDGE_SECONDS.observe(time.perf_counter() - started)
        if 300 <= status < 400:
            metrics.JUDGE_CALLS.labels(result="refused").inc()
            raise EvaluationFailed(f"the judge answered HTTP {status} to {location!r}: redirects are not followed")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}: {text[:200]}", retry_after_seconds(retry_after))
        if status >= 400:
            metrics.JUDGE_CALLS.labels(result="refused").inc()
            raise EvaluationFailed(f"the judge refused the request: HTTP {status}: {text[:300]}")
        try:
            answer = json.loads(text)
        except ValueError:
            raise EvaluationFailed(f"the judge's response is not JSON: {text[:300]!r}") from None
        return answer if isinstance(answer, dict) else {}

    def _outcome(self, endpoint: Endpoint, answer: dict[str, Any], attempt: int) -> Outcome:
        try:
            content = answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            metrics.JUDGE_CALLS.labels(result="unreadable").inc()
            raise EvaluationFailed(f"the judge's response has no message: {str(answer)[:300]}") from None
        usage = answer.get("usage") or {}
        input_tokens = int(usage.get("prompt_tokens") or 0)
        output_tokens = int(usage.get("completion_tokens") or 0)
        metrics.JUDGE_TOKENS.labels(kind="input").inc(input_tokens)
        metrics.JUDGE_TOKENS.labels(kind="output").inc(output_tokens)
        cost = cost_of(endpoint, input_tokens, output_tokens)
        if cost:
            metrics.JUDGE_COST.inc(cost)
        try:
            score, explanation = parse_verdict(str(content))
        except EvaluationFailed:
            metrics.JUDGE_CALLS.labels(result="unreadable").inc()
            raise
        metrics.JUDGE_CALLS.labels(result="ok").inc()
        return Outcome(
            score,
            explanation=explanation,
            cost=cost,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            attempts=attempt,
        )
