"""The prompt registry's pure core: rules, templates, traffic splits, diffs."""

from __future__ import annotations

import collections
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vane.prompt import Prompt
from vane.prompt_cache import Entry
from vane.prompt_split import choose
from vane.prompt_template import compile_body, variables_of
from vane.prompts import prompt_of

from services.common.errors import Invalid
from services.registry import rules
from services.registry.diff import diff_versions
from services.registry.keys import credential_values
from services.registry.resolution import Resolution, version_json, version_message


def test_variables_are_listed_once_in_order_of_appearance() -> None:
    assert variables_of("{{b}} and {{ a }} then {{b}} but not {x} or {{1x}}") == ["b", "a"]
    chat = [
        {"role": "user", "content": "{{q}}"},
        {"type": "placeholder", "name": "h"},
        {"role": "user", "content": "{{r}}"},
    ]
    assert variables_of(chat) == ["q", "r"]


def test_compile_fills_known_variables_and_leaves_unknown_ones() -> None:
    assert compile_body("Hi {{name}}, {{missing}}", {"name": "Ada"}) == "Hi Ada, {{missing}}"


def test_compile_fills_placeholders_with_lists_of_messages() -> None:
    body = [{"role": "system", "content": "Be {{tone}}"}, {"type": "placeholder", "name": "history"}]
    history = [{"role": "user", "content": "hi"}]
    assert compile_body(body, {"tone": "kind", "history": history}) == [
        {"role": "system", "content": "Be kind"},
        {"role": "user", "content": "hi"},
    ]
    assert compile_body(body, {})[1] == {"type": "placeholder", "name": "history"}


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=50))
def test_text_without_variables_compiles_to_itself(text: str) -> None:
    assert compile_body(text, {"x": "y"}) == text


def test_fallback_prompt_is_version_zero_and_marked() -> None:
    p = Prompt.fallback("greet", "Hello {{name}}")
    assert (p.version, p.is_fallback, p.type, p.variables, p.compile(name="Ada")) == (
        0,
        True,
        "text",
        ("name",),
        "Hello Ada",
    )


@pytest.mark.parametrize("name", ["", "   ", "a" * 256, "a|b", None, 3])
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(Invalid):
        rules.check_name(name)


@pytest.mark.parametrize("label", ["Prod", "a b", "x" * 37, "", "latest", "ünï"])
def test_bad_or_reserved_labels_are_refused(label: str) -> None:
    with pytest.raises(Invalid):
        rules.check_label(label)


def test_good_labels_and_names_pass() -> None:
    assert rules.check_label("prod-a.v_2") == "prod-a.v_2"
    assert rules.check_label("x" * 36) == "x" * 36
    assert rules.check_name("team/support reply") == "team/support reply"
    assert rules.check_labels(["a", "b", "a"]) == ("a", "b")


def test_type_is_inferred_from_the_body_and_checked_when_given() -> None:
    assert rules.new_version("p", None, "hi").type == "text"
    assert rules.new_version("p", None, [{"role": "user", "content": "hi"}]).type == "chat"
    with pytest.raises(Invalid):
        rules.new_version("p", "text", [{"role": "user", "content": "hi"}])
    with pytest.raises(Invalid):
        rules.new_version("p", "chat", [])


@pytest.mark.parametrize("split", [[], [(1, 0)], [(0, 5)], [(1, 5), (1, 5)], [(1, 1.5)], [(True, 1)]])
def test_bad_splits_are_refused(split: list[tuple[Any, Any]]) -> None:
    with pytest.raises(Invalid):
        rules.check_split(split)


def test_sticky_key_always_gets_the_same_version() -> None:
    weights = [(2, 90), (3, 10)]
    for key in ("ada", "grace", "session-42"):
        assert len({choose(weights, key, salt="p\x00production") for _ in range(50)}) == 1


def test_sticky_keys_and_random_draws_follow_the_weights() -> None:
    weights = [(2, 90), (3, 10)]
    sticky = collections.Counter(choose(weights, f"user-{i}", salt="s") for i in range(10_000))
    drawn = collections.Counter(choose(weights, None) for _ in range(10_000))
    for counts in (sticky, drawn):
        assert 8_700 < counts[2] < 9_300 and counts[2] + counts[3] == 10_000


def _row(version: int, text: str) -> dict[str, Any]:
    return {
        "name": "p",
        "version": version,
        "type": "text",
        "prompt": f'"{text}"',
        "config": '{"max_tokens": 256}',
        "tags": [],
        "variables": [],
        "commit_message": "",
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
    }


def test_registry_and_sdk_draw_the_same_version_for_a_sticky_key() -> None:
    a, b = version_message(_row(1, "A"), ["production"]), version_message(_row(2, "B"), ["production"])
    resolution = Resolution("p", "production", [(a, 30), (b, 70)])
    entry = Entry.of(0.0, "production", [(prompt_of(a), 30), (prompt_of(b), 70)])
    for i in range(200):
        assert resolution.pick(f"u{i}") == entry.pick(f"u{i}").version


def test_resolution_survives_its_redis_encoding_and_keeps_integers_in_config() -> None:
    message = version_message(_row(1, "A"), ["latest"])
    decoded = Resolution.decode("p", Resolution("p", "latest", [(message, 100)]).encode())
    assert decoded.weights == ((1, 100),) and decoded.label == "latest"
    assert version_json(decoded.by_version[1])["config"] == {"max_tokens": 256}


def test_diff_lists_changed_prompt_and_config_lines() -> None:
    old = {"name": "p", "version": 1, "type": "chat", "config": {"t": 1}, "prompt": [{"role": "user", "content": "a"}]}
    new = {**old, "version": 2, "prompt": [{"role": "user", "content": "b"}, {"type": "placeholder", "name": "h"}]}
    diff = diff_versions(old, new)
    assert diff["changed"] and "-user: a" in diff["prompt"] and "+[[placeholder: h]]" in diff["prompt"]
    assert diff["config"] == [] and not diff_versions(old, old)["changed"]


def test_a_grpc_caller_is_remembered_by_its_credential_headers_only() -> None:
    metadata = [
        ("user-agent", "grpc-python/1.85"),
        ("authorization", "Bearer sk-vane-a"),
        ("x-trace-bin", b"\x00"),
        ("x-api-key", "pk-vane-a"),
    ]
    assert credential_values(metadata) == (("authorization", "Bearer sk-vane-a"), ("x-api-key", "pk-vane-a"))
    assert credential_values([("user-agent", "other")]) == ()
