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
        ),
        EvaluatorSpec(
            "embedding_similarity",
            "1",
            "numeric",
            "Cosine similarity of the output to a reference or context, embedded offline (all-MiniLM-L6-v2)",
            ("output", "reference"),
            range=(-1.0, 1.0),
        ),
        EvaluatorSpec("is_json", "1", "boolean", "The output parses as JSON", ("output",)),
        EvaluatorSpec("json_schema", "1", "boolean", "The output is JSON valid against a schema", ("output",)),
        EvaluatorSpec("regex", "1", "boolean", "The output matches a regular expression", ("output",)),
        EvaluatorSpec("contains", "1", "boolean", "The output contains the given strings", ("output",)),
        EvaluatorSpec("exact_match", "1", "boolean", "The output equals the reference", ("output", "reference")),
        EvaluatorSpec(
            "levenshtein",
            "1",
            "numeric",
            "Normalised Levenshtein similarity of the output to the reference",
            ("output", "reference"),
            range=(0.0, 1.0),
        ),
        EvaluatorSpec("length", "1", "numeric", "Length of the output in characters or words", ("output",)),
    )
}
