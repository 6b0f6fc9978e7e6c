"""PII redaction: a project's rules (built-in detectors and its own patterns) and what applies them.

Built-in detectors, in the order they run (keys first: a key's digits must not read as a phone):
  api_key   OpenAI/Anthropic (sk-…), AWS (AKIA…), GitHub (ghp_…, github_pat_…), Slack (xox…-),
            Google (AIza…), Stripe (sk_live_…), Vane (sk-vane-…), JWTs and `Bearer <token>`
  card      13 to 19 digits, spaced or dashed, that pass the Luhn check
  email     addresses
  phone     9 to 15 digits written as a phone number (a leading + or separators)
A project's own patterns are RE2 expressions (linear time: a pattern cannot stall ingest), each
replaced by `[REDACTED:<name>]`. The detectors' own expressions are fixed and backtrack-safe.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from services.common.errors import Invalid

MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 500
COUNT_ATTRIBUTE = "vane.redacted"  # on each redacted span: {detector: how many}

_API_KEY = re.compile(
    r"""(?<![A-Za-z0-9_-])(?:
        sk-(?:ant-|proj-|vane-)?[A-Za-z0-9_-]{20,}
      | (?:AKIA|ASIA)[0-9A-Z]{16}
      | gh[pousr]_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{40,}
      | xox[abposr]-[A-Za-z0-9-]{10,}
      | AIza[0-9A-Za-z_-]{35}
      | (?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
    )
    | (?<=Bearer\ )[A-Za-z0-9._~+/-]{16,}=*""",
    re.VERBOSE,
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone(match: re.Match[str]) -> bool:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    written_as_phone = text.startswith("+") or "(" in text or any(c in text for c in " .-")
    return 9 <= digits <= 15 and written_as_phone and not _IPV4.fullmatch(text)


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    accept: Callable[[re.Match[str]], bool] | None = None  # a second look the expression cannot take


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("api_key", _API_KEY),
        Detector("card", _CARD, _card),
        Detector("email", _EMAIL),
        Detector("phone", _PHONE, _phone),
    )
}


@dataclass(frozen=True)
class CustomPattern:
    name: str
    regex: str


@dataclass(frozen=True)
class RedactionRules:
    detectors: tuple[str, ...] = ()
    patterns: tuple[CustomPattern, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.detectors and not self.patterns

    def json(self) -> dict[str, Any]:
        return {
            "detectors": list(self.detectors),
            "patterns": [{"name": p.name, "regex": p.regex} for p in self.patterns],
        }


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _compile_custom(pattern: CustomPattern) -> Any:
    try:
        compiled = re2.compile(pattern.regex, _RE2_OPTIONS)
    except re2.error as exc:
        raise Invalid(f"pattern {pattern.name!r} is not an RE2 expression: {exc}") from None
    if compiled.search("") is not None:
        raise Invalid(f"pattern {pattern.name!r} matches the empty string")
    return compiled


def parse_rules(body: object) -> RedactionRules:
    """Rules from a request body: {"detectors": [...], "patterns": [{"name", "regex"}]}."""
    if not isinstance(body, dict) or set(body) - {"detectors", "patterns"}:
        raise Invalid('send {"detectors": [...], "patterns": [{"name": ..., "regex": ...}]}')
    detectors = body.get("detectors", [])
    if not isinstance(detectors, list) or any(d not in DETECTORS for d in detectors):
        raise Invalid(f"detectors must be a list of {sorted(DETECTORS)}")
    raw = body.get("patterns", [])
    if not isinstance(raw, list) or len(raw) > MAX_PATTERNS:
        raise Invalid(f"patterns must be a list of at most {MAX_PATTERNS} {{name, regex}}")
    patterns = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("regex"), str)
        ):
            raise Invalid('each pattern is {"name": "order_id", "regex": "ORD-[0-9]{6}"}')
        if not _NAME.match(item["name"]) or item["name"] in DETECTORS:
            raise Invalid(f"pattern name {item['name']!r} must be lower_snake_case and not a detector's name")
        if not item["regex"] or len(item["regex"]) > MAX_PATTERN_LENGTH:
            raise Invalid(f"pattern {item['name']!r} must be 1 to {MAX_PATTERN_LENGTH} characters")
        pattern = CustomPattern(item["name"], item["regex"])
        _compile_custom(pattern)
        patterns.append(pattern)
    if len({p.name for p in patterns}) != len(patterns):
        raise Invalid("pattern names must be unique")
    ordered = tuple(name for name in DETECTORS if name in detectors)
    return RedactionRules(ordered, tuple(patterns))


class Redactor:
    """Applies one project's rules to text and to JSON values, counting what it replaced."""

    def __init__(self, rules: RedactionRules) -> None:
        self.rules = rules
        self._detectors = [DETECTORS[name] for name in rules.detectors]
        self._custom = [(p.name, _compile_custom(p)) for p in rules.patterns]

    def text(self, text: str, counts: Counter[str]) -> str:
        if not text:
            return text
        for detector in self._detectors:
            text = self._apply(detector, text, counts)
        for name, compiled in self._custom:
            text, n = compiled.subn(f"[REDACTED:{name}]", text)
            if n:
                counts[name] += n
        return text

    @staticmethod
    def _apply(detector: Detector, text: str, counts: Counter[str]) -> str:
        replacement = f"[REDACTED:{detector.name}]"

        def replace(match: re.Match[str]) -> str:
            if detector.accept is not None and not detector.accept(match):
                return match.group()
            counts[detector.name] += 1
            return replacement

        return detector.pattern.sub(replace, text)

    def value(self, value: Any, counts: Counter[str]) -> Any:
        """A JSON value with every string in it redacted (keys are left as they are)."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, list):
            return [self.value(v, counts) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v, counts) for k, v in value.items()}
        return value

    def json_text(self, text: str, counts: Counter[str]) -> str:
        """JSON text with its strings redacted, still valid JSON; text that is not JSON as text."""
        if not text:
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            return self.text(text, counts)
        before = sum(counts.values())
        redacted = self.value(parsed, counts)
        return json.dumps(redacted, ensure_ascii=False) if sum(counts.values()) != before else text
