"""The rule-based evaluators: pure functions of the inputs (output, reference) and the config.

Each takes the bound inputs and the evaluation's config and returns an Outcome; a config that
cannot work (no pattern, a broken schema) raises EvaluationFailed with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jsonschema
from rapidfuzz.distance import Levenshtein

from services.evaluator.outcomes import EvaluationFailed, Outcome

Inputs = Mapping[str, str]
Config = Mapping[str, Any]
RuleEvaluator = Callable[[Inputs, Config], Outcome]

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _need(inputs: Inputs, name: str) -> str:
    if name not in inputs:
        raise EvaluationFailed(f"no {name} to evaluate: map `{name}` to a span path or set it in config")
    return inputs[name]


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, str(exc)


def is_json(inputs: Inputs, config: Config) -> Outcome:
    output = _need(inputs, "output")
    value, error = _parse_json(output)
    if error is not None:
        return Outcome.boolean(False, f"not JSON: {error}")
    return Outcome.boolean(True, f"valid JSON ({type(value).__name__})")


@lru_cache(maxsize=256)
def _validator(schema_text: str) -> jsonschema.protocols.Validator:
    try:
        schema = json.loads(schema_text)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except (ValueError, jsonschema.SchemaError) as exc:
        raise EvaluationFailed(f"config.schema is not a valid JSON Schema: {exc}") from None
    return cls(schema)


def json_schema(inputs: Inputs, config: Config) -> Outcome:
    schema = config.get("schema")
    if schema is None:
        raise EvaluationFailed("json_schema needs config.schema (a JSON Schema)")
    validator = _validator(schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True))
    value, error = _parse_json(_need(inputs, "output"))
    if error is not None:
        return Outcome.boolean(False, f"not JSON: {error}")
    problem = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(root)"
        return Outcome.boolean(False, f"invalid at {where}: {problem.message}")
    return Outcome.boolean(True, "valid against the schema")


@lru_cache(maxsize=256)
def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    bits = 0
    for flag in flags:
        if flag not in _REGEX_FLAGS:
            raise EvaluationFailed(f"config.flags: unknown flag {flag!r} (use i, m, s, x)")
        bits |= _REGEX_FLAGS[flag]
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise EvaluationFailed(f"config.pattern is not a valid regular expression: {exc}") from None


def regex(inputs: Inputs, config: Config) -> Outcome:
    pattern = config.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise EvaluationFailed("regex needs config.pattern (a regular expression)")
    compiled = _compile(pattern, str(config.get("flags", "")))
    output = _need(inputs, "output")
    full = config.get("mode", "search") == "fullmatch"
    match = compiled.fullmatch(output) if full else compiled.search(output)
    if match is None:
        return Outcome.boolean(False, f"no {'full ' if full else ''}match for /{pattern}/")
    return Outcome.boolean(True, f"matched {match.group(0)[:200]!r}")


def contains(inputs: Inputs, config: Config) -> Outcome:
    wanted = config.get("values", config.get("value"))
    if isinstance(wanted, str):
        wanted = [wanted]
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
        raise EvaluationFailed("contains needs config.values (a non-empty list of strings) or config.value")
    mode = config.get("mode", "all")
    if mode not in ("all", "any", "none"):
        raise EvaluationFailed(f"config.mode must be all, any or none, got {mode!r}")
    output = _need(inputs, "output")
    if not config.get("case_sensitive", True):
        output, wanted = output.casefold(), [w.casefold() for w in wanted]
    present = [w for w in wanted if w in output]
    absent = [w for w in wanted if w not in output]
    passed = {"all": not absent, "any": bool(present), "none": not present}[mode]
    return Outcome.boolean(passed, f"mode {mode}: present {present[:10]}, absent {absent[:10]}")


def _normalise(text: str, config: Config) -> str:
    if config.get("strip", True):
        text = text.strip()
    if config.get("collapse_whitespace", False):
        text = " ".join(text.split())
    if not config.get("case_sensitive", True):
        text = text.casefold()
    return text


def exact_match(inputs: Inputs, config: Config) -> Outcome:
    output = _normalise(_need(inputs, "output"), config)
    reference = _normalise(_need(inputs, "reference"), config)
    if output == reference:
        return Outcome.boolean(True, "the output equals the reference")
    at = next((i for i, (a, b) in enumerate(zip(output, reference, strict=False)) if a != b), None)
    at = min(len(output), len(reference)) if at is None else at
    return Outcome.boolean(False, f"differs from the reference at character {at}")


def levenshtein(inputs: Inputs, config: Config) -> Outcome:
    output = _normalise(_need(inputs, "output"), config)
    reference = _normalise(_need(inputs, "reference"), config)
    longest = max(len(output), len(reference))
    if longest == 0:
        return Outcome(1.0, explanation="both are empty")
    distance = Levenshtein.distance(output, reference)
    similarity = 1.0 - distance / longest
    return Outcome(similarity, explanation=f"edit distance {distance} over {longest} characters")


def length(inputs: Inputs, config: Config) -> Outcome:
    output = _need(inputs, "output")
    unit = config.get("unit", "characters")
    if unit not in ("characters", "words", "lines"):
        raise EvaluationFailed(f"config.unit must be characters, words or lines, got {unit!r}")
    count = {"characters": len(output), "words": len(output.split()), "lines": len(output.splitlines())}[unit]
    explanation = f"{count} {unit}"
    low, high = config.get("min"), config.get("max")
    if low is not None or high is not None:
        inside = (low is None or count >= low) and (high is None or count <= high)
        bounds = f"[{'' if low is None else low}, {'' if high is None else high}]"
        explanation += f", {'within' if inside else 'outside'} {bounds}"
    return Outcome(float(count), explanation=explanation)


RULES: dict[str, RuleEvaluator] = {
    "is_json": is_json,
    "json_schema": json_schema,
    "regex": regex,
    "contains": contains,
    "exact_match": exact_match,
    "levenshtein": levenshtein,
    "length": length,
}
