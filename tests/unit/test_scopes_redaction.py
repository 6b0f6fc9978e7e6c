"""PII redaction: each built-in detector on realistic text, what it must leave alone, a project's
own patterns, JSON kept valid, and a canonical span redacted with its count."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from vane.v1.bus_pb2 import CanonicalSpan

from services.common.errors import Invalid
from services.common.redaction import DETECTORS, RedactionRules, Redactor, luhn_valid, parse_rules
from services.ingest.redact import redact_records

ALL = Redactor(parse_rules({"detectors": sorted(DETECTORS)}))


def redacted(text: str, redactor: Redactor = ALL) -> tuple[str, dict[str, int]]:
    counts: Counter[str] = Counter()
    return redactor.text(text, counts), dict(counts)


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        (
            "Hi, I'm Dana (dana.okafor+billing@northwind-traders.co.uk), please reset my password.",
            "Hi, I'm Dana ([REDACTED:email]), please reset my password.",
            {"email": 1},
        ),
        (
            "Call me back on +44 20 7946 0958 or (415) 555-0132 after 5pm.",
            "Call me back on [REDACTED:phone] or [REDACTED:phone] after 5pm.",
            {"phone": 2},
        ),
        (
            "My Visa is 4111 1111 1111 1111, exp 09/27; the Amex 3782-822463-10005 was declined.",
            "My Visa is [REDACTED:card], exp 09/27; the Amex [REDACTED:card] was declined.",
            {"card": 2},
        ),
        (
            "use OPENAI_API_KEY=sk-proj-AbCdEfGhIjKlMnOpQrStUvWx123456 and AWS AKIAIOSFODNN7EXAMPLE",
            "use OPENAI_API_KEY=[REDACTED:api_key] and AWS [REDACTED:api_key]",
            {"api_key": 2},
        ),
        (
            "curl -H 'Authorization: Bearer abcdefghijklmnop1234567890' https://api.example.com",
            "curl -H 'Authorization: Bearer [REDACTED:api_key]' https://api.example.com",
            {"api_key": 1},
        ),
        (
            "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 and xoxb-1234567890-abcdefghij",
            "token [REDACTED:api_key] and [REDACTED:api_key]",
            {"api_key": 2},
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt [REDACTED:api_key]",
            {"api_key": 1},
        ),
    ],
)
def test_each_detector_on_realistic_text(text: str, expected: str, counts: dict[str, int]) -> None:
    assert redacted(text) == (expected, counts)


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111111111111112 shipped",  # 16 digits failing Luhn: an order number, not a card
        "Meeting on 2024-05-17 at 14:30, room 301",
        "The server at 192.168.100.200 answered in 1534 ms",
        "Trace 1718000000123456789 took 250ms",
        "Version 1.2.3 of the prompt scored 0.875",
        "Email me at the usual place",
        "risk-assessment-model-v2 and sk-short",
    ],
)
def test_what_is_not_pii_is_left_alone(text: str) -> None:
    assert redacted(text) == (text, {})


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005") and luhn_valid("5555555555554444")
    assert not luhn_valid("4111111111111112")


def test_only_the_chosen_detectors_run_and_custom_patterns_are_named() -> None:
    rules = parse_rules({"detectors": ["email"], "patterns": [{"name": "order_id", "regex": "ORD-[0-9]{6}"}]})
    redactor = Redactor(rules)
    text = "ORD-123456 for ana@example.com, phone +1 415 555 0132"
    assert redacted(text, redactor) == (
        "[REDACTED:order_id] for [REDACTED:email], phone +1 415 555 0132",
        {"email": 1, "order_id": 1},
    )


@pytest.mark.parametrize(
    "body",
    [
        {"detectors": ["ssn"]},
        {"patterns": [{"name": "x", "regex": "(a)\\1"}]},  # a backreference: not RE2, could backtrack
        {"patterns": [{"name": "empty", "regex": "a*"}]},  # matches the empty string
        {"patterns": [{"name": "Bad Name", "regex": "x"}]},
        {"patterns": [{"name": "email", "regex": "x"}]},
        {"patterns": [{"name": "a", "regex": "x"}, {"name": "a", "regex": "y"}]},
        {"detectors": ["email"], "extra": 1},
        ["email"],
    ],
)
def test_bad_rules_are_refused(body: object) -> None:
    with pytest.raises(Invalid):
        parse_rules(body)


def test_json_stays_valid_and_keys_are_kept() -> None:
    counts: Counter[str] = Counter()
    messages = json.dumps([{"role": "user", "content": 'I\'m at bob@example.org "quoted"'}])
    out = ALL.json_text(messages, counts)
    assert json.loads(out) == [{"role": "user", "content": 'I\'m at [REDACTED:email] "quoted"'}]
    assert ALL.json_text("plain a@b.io text", counts) == "plain [REDACTED:email] text"
    assert ALL.json_text('{"n": 1}', counts) == '{"n": 1}'  # nothing to redact: the text as it came


def test_a_span_is_redacted_everywhere_its_text_is_and_carries_its_count() -> None:
    span = CanonicalSpan(
        span_id=b"\xab" * 8,
        input=json.dumps([{"role": "user", "content": "card 4242 4242 4242 4242, mail eve@corp.com"}]),
        output="Thanks eve@corp.com, we will call +1 (415) 555-0132.",
        attributes_json=json.dumps({"gen_ai.prompt": "card 4242424242424242", "llm.model": "gpt-4o"}),
        error_message="",
    )
    clean = CanonicalSpan(span_id=b"\xcd" * 8, input="hello", output="world", attributes_json="{}")
    records = [span.SerializeToString(), clean.SerializeToString()]
    out = redact_records(ALL, records)
    assert out[1] == records[1]
    got = CanonicalSpan.FromString(out[0])
    assert "4242" not in got.input + got.attributes_json and "eve@corp.com" not in got.input + got.output
    assert got.output == "Thanks [REDACTED:email], we will call [REDACTED:phone]."
    attributes = json.loads(got.attributes_json)
    assert attributes["gen_ai.prompt"] == "card [REDACTED:card]" and attributes["llm.model"] == "gpt-4o"
    assert attributes["vane.redacted"] == {"card": 2, "email": 2, "phone": 1}


def test_no_rules_means_no_redactor_work() -> None:
    assert RedactionRules().empty
    assert not parse_rules({"detectors": []}).detectors
