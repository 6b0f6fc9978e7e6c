"""The evaluator's Prometheus metrics (served at /metrics by the shared health routes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVALUATIONS = Counter(
    "vane_evaluator_evaluations_total", "Evaluations recorded, by evaluator and status", ["evaluator", "status"]
)
EVALUATION_ERRORS = Counter(
    "vane_evaluator_evaluation_errors_total", "Evaluations recorded as errors, by evaluator", ["evaluator"]
)
SPANS = Counter("vane_evaluator_spans_total", "Spans read from the spans stream")
MESSAGES = Counter("vane_evaluator_messages_total", "Span messages handled, by result", ["result"])
IN_FLIGHT = Gauge("vane_evaluator_messages_in_flight", "Span messages being evaluated")
UNKNOWN_EVALUATORS = Counter(
    "vane_evaluator_unknown_evaluators_total", "Eval tags naming an evaluator that is not in the catalogue", ["name"]
)
JUDGE_IN_FLIGHT = Gauge("vane_evaluator_judge_calls_in_flight", "Judge HTTP calls waiting for an answer")
JUDGE_CALLS = Counter("vane_evaluator_judge_calls_total", "Judge HTTP calls, by result", ["result"])
JUDGE_SECONDS = Histogram(
    "vane_evaluator_judge_call_seconds",
    "Judge HTTP call latency",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
JUDGE_TOKENS = Counter("vane_evaluator_judge_tokens_total", "Tokens the judge spent, by kind", ["kind"])
JUDGE_COST = Counter("vane_evaluator_judge_cost_usd_total", "What the judge cost, in USD")
