"""The shared prompt vectors (tests/vectors/prompts.json) through the Python SDK's functions, which
the registry uses too; the TypeScript SDK's tests read the same file, so all three compile alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from vane.prompt import Prompt
from vane.prompt_split import choose
from vane.prompt_template import compile_body, variables_of

VECTORS: dict[str, Any] = json.loads((Path(__file__).parents[1] / "vectors" / "prompts.json").read_text("utf-8"))


@pytest.mark.parametrize("case", VECTORS["compile"], ids=[c["case"] for c in VECTORS["compile"]])
def test_compile_gives_the_vector_result(case: dict[str, Any]) -> None:
    assert compile_body(case["body"], case["values"]) == case["expected"]
    assert Prompt.fallback("p", case["body"]).compile(**case["values"]) == case["expected"]


@pytest.mark.parametrize("case", VECTORS["variables"])
def test_variables_are_the_vector_names(case: dict[str, Any]) -> None:
    assert variables_of(case["body"]) == case["expected"]


def test_sticky_split_draws_the_vector_versions() -> None:
    drawn = [choose([tuple(w) for w in c["weights"]], c["sticky_key"], salt=c["salt"]) for c in VECTORS["split"]]
    assert drawn == [c["version"] for c in VECTORS["split"]]
