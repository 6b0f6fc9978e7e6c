"""Vane's evaluator catalogue: names, versions and output types.

Shared data, not code of a service: the evaluator runs these, ingest answers Future AGI's
traceAI eval-config questions from this list, and the API lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
