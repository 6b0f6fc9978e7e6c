"""Vane's evaluator catalogue: names, versions and output types, and which of Future AGI's traceAI
system evals Vane runs with them.

Shared data, not code of a service: the evaluator runs these, ingest answers Future AGI's
traceAI eval-config questions from this list, and the API lists it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

OutputType = Literal["numeric", "boolean", "categorical"]


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    version: str
    output: OutputType
    description: str
    inputs: tuple[str, ...]  # the names a mapping binds to span paths
    range: tuple[float, float] | None = None  # for numeric output
    categories: tuple[str, ...] = field(default=())
    model_based: bool = False
    config: tuple[str, ...] = field(default=())  # the config keys it reads


CATALOGUE: dict[str, EvaluatorSpec] = {
    spec.name: spec
    for spec in (
        EvaluatorSpec(
            "llm_judge",
            "1",
            "numeric",
            "An LLM judges the output with a rubric (relevance, correctness, helpfulness, toxicity, groundedness)",
            ("input", "output", "reference", "context"),
            range=(0.0, 1.0),
            model_based=True,
            config=(
                "rubric",
                "prompt",
                "criteria",
                "base_url",
                "model",
                "api_key_env",
                "temperature",
                "timeout_seconds",
                "retries",
                "json_mode",
                "input_price_per_mtok",
                "output_price_per_mtok",
            ),
        ),
        EvaluatorSpec(
            "embedding_similarity",
            "1",
            "numeric",
            "Cosine similarity of the output to a reference or context, embedded offline (all-MiniLM-L6-v2)",
            ("output", "reference", "context"),
            range=(-1.0, 1.0),
            config=("against",),
        ),
        EvaluatorSpec("is_json", "1", "boolean", "The output parses as JSON", ("output",)),
        EvaluatorSpec(
            "json_schema", "1", "boolean", "The output is JSON valid against a schema", ("output",), config=("schema",)
        ),
        EvaluatorSpec(
            "regex",
            "1",
            "boolean",
            "The output matches a regular expression",
            ("output",),
            config=("pattern", "flags", "mode"),
        ),
        EvaluatorSpec(
            "contains",
            "1",
            "boolean",
            "The output contains the given strings",
            ("output",),
            config=("values", "value", "mode", "case_sensitive"),
        ),
        EvaluatorSpec(
            "exact_match",
            "1",
            "boolean",
            "The output equals the reference",
            ("output", "reference"),
            config=("reference", "case_sensitive", "strip", "collapse_whitespace"),
        ),
        EvaluatorSpec(
            "levenshtein",
            "1",
            "numeric",
            "Normalised Levenshtein similarity of the output to the reference",
            ("output", "reference"),
            range=(0.0, 1.0),
            config=("reference", "case_sensitive", "strip", "collapse_whitespace"),
        ),
        EvaluatorSpec(
            "length",
            "1",
            "numeric",
            "Length of the output in characters, words or lines",
            ("output",),
            config=("unit", "min", "max"),
        ),
    )
}


@dataclass(frozen=True)
class TraceAIEval:
    """One of traceAI's system evals as Vane runs it: the evaluator, traceAI's own mapping keys for
    it, the keys that name an evaluator input of another name, and the config that makes it that eval."""

    evaluator: str
    keys: tuple[str, ...]  # as traceAI's EvalMappingConfig lists them
    inputs: Mapping[str, str] = field(default_factory=dict)  # traceAI key -> Vane input
    config: Mapping[str, Any] = field(default_factory=dict)


# traceAI system eval name -> the Vane evaluator that scores the same thing.
TRACEAI_EVALS: dict[str, TraceAIEval] = {
    "is_json": TraceAIEval("is_json", ("text",), {"text": "output"}),
    "levenshtein_similarity": TraceAIEval(
        "levenshtein", ("response", "expected_text"), {"response": "output", "expected_text": "reference"}
    ),
    "embedding_similarity": TraceAIEval(
        "embedding_similarity", ("response", "expected_text"), {"response": "output", "expected_text": "reference"}
    ),
    "toxicity": TraceAIEval("llm_judge", ("input",), {"input": "output"}, {"rubric": "toxicity"}),
    "groundedness": TraceAIEval("llm_judge", ("output", "input"), {"input": "context"}, {"rubric": "groundedness"}),
    "context_adherence": TraceAIEval("llm_judge", ("context", "output"), {}, {"rubric": "groundedness"}),
    "detect_hallucination": TraceAIEval(
        "llm_judge", ("input", "output"), {"input": "context"}, {"rubric": "groundedness"}
    ),
    "is_helpful": TraceAIEval("llm_judge", ("input", "output"), {}, {"rubric": "helpfulness"}),
    "completeness": TraceAIEval("llm_judge", ("input", "output"), {}, {"rubric": "helpfulness"}),
    "task_completion": TraceAIEval("llm_judge", ("input", "output"), {}, {"rubric": "helpfulness"}),
    "factual_accuracy": TraceAIEval(
        "llm_judge", ("input", "output", "context"), {"context": "reference"}, {"rubric": "correctness"}
    ),
    # traceAI's text checks, as Vane's regex: the pattern is the eval's (traceAI sends no config for them)
    "one_line": TraceAIEval("regex", ("text",), {"text": "output"}, {"pattern": r"[^\n]*\n?", "mode": "fullmatch"}),
    "is_email": TraceAIEval(
        "regex", ("text",), {"text": "output"}, {"pattern": r"\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*", "mode": "fullmatch"}
    ),
    "contains_valid_link": TraceAIEval(
        "regex", ("text",), {"text": "output"}, {"pattern": r"https?://[^\s/$.?#][^\s]*"}
    ),
}


def offered() -> str:
    """What Vane runs, for a refusal: traceAI's system evals by their names, then Vane's own."""
    return (
        f"traceAI's system evals {', '.join(TRACEAI_EVALS)}; "
        f"or Vane's evaluators {', '.join(CATALOGUE)} (with their own mapping keys)"
    )
