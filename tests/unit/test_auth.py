"""The three header forms of CONTRACT, and what a bad header is told."""

from __future__ import annotations

import base64

import pytest

from services.common.auth import (
    PUBLIC_PREFIX,
    SECRET_PREFIX,
    Credentials,
    credentials_from_headers,
    hash_secret,
    new_key_pair,
)
from services.common.errors import Unauthenticated


def _basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def test_bearer_header_carries_the_secret_alone() -> None:
    assert credentials_from_headers({"Authorization": "Bearer sk-vane-abc"}) == Credentials("sk-vane-abc")


def test_basic_header_carries_public_and_secret_as_langfuse_sends_them() -> None:
    headers = {"authorization": _basic("pk-vane-1:sk-vane-2")}
    assert credentials_from_headers(headers) == Credentials("sk-vane-2", "pk-vane-1")


def test_api_key_headers_carry_public_and_secret_as_traceai_sends_them() -> None:
    headers = {"X-Api-Key": "pk-vane-1", "X-Secret-Key": "sk-vane-2"}
    assert credentials_from_headers(headers) == Credentials("sk-vane-2", "pk-vane-1")


def test_header_names_and_scheme_are_case_insensitive() -> None:
    assert credentials_from_headers({"AUTHORIZATION": "bearer sk-vane-x"}).secret_key == "sk-vane-x"
    assert credentials_from_headers({"x-secret-key": "sk-vane-y"}) == Credentials("sk-vane-y")


def test_missing_key_is_refused_naming_the_accepted_forms() -> None:
    with pytest.raises(Unauthenticated, match=r"missing API key.*Bearer.*X-Api-Key"):
        credentials_from_headers({"Accept": "application/json"})


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!not-base64!!!",
        _basic("no-colon-here"),
        _basic("pk-vane-1:"),
        "Basic " + base64.b64encode(b"\xff").decode(),
    ],
)
def test_bad_basic_header_is_refused(value: str) -> None:
    with pytest.raises(Unauthenticated, match="Basic"):
        credentials_from_headers({"Authorization": value})


def test_unknown_scheme_and_empty_bearer_are_refused() -> None:
    for value in ("Token sk-vane-1", "Bearer", "Bearer   "):
        with pytest.raises(Unauthenticated):
            credentials_from_headers({"Authorization": value})


def test_new_key_pairs_are_prefixed_unique_and_only_their_hash_is_kept() -> None:
    a, b = new_key_pair(), new_key_pair()
    assert a.public_key.startswith(PUBLIC_PREFIX) and a.secret_key.startswith(SECRET_PREFIX)
    assert a != b
    assert hash_secret(a.secret_key) == hash_secret(a.secret_key)
    assert a.secret_key not in hash_secret(a.secret_key)
    assert len(hash_secret(a.secret_key)) == 64
