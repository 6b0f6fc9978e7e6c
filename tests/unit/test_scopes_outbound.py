"""The outbound URL policy: metadata and link-local always refused, private only when the operator
allows it, and the spellings that try to slip past (IPv4-mapped IPv6, decimal and hex IPv4)."""

from __future__ import annotations

import ipaddress

import pytest

from services.common.outbound import OutboundPolicy, OutboundRefused

DEFAULT = OutboundPolicy()
STRICT = OutboundPolicy(allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.170.2/v2/credentials",  # ECS task credentials
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./computeMetadata/v1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]/",
        "http://0.0.0.0:8081/api/v1/keys",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://2852039166/",  # 169.254.169.254 as one decimal number
        "http://0xa9fea9fe/",
        "http://169.254.43518/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http:///nohost",
    ],
)
def test_metadata_link_local_and_odd_schemes_are_always_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        DEFAULT.split(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/v1",
        "http://10.0.0.7/v1",
        "http://192.168.1.2/",
        "http://[::1]:8080/",
        "http://[fd12::1]/",
    ],
)
def test_private_and_loopback_pass_by_default_and_are_refused_when_the_operator_says(url: str) -> None:
    DEFAULT.split(url)
    with pytest.raises(OutboundRefused) as refused:
        STRICT.split(url)
    assert "VANE_ALLOW_PRIVATE_URLS" in refused.value.message


def test_public_addresses_pass_under_any_policy() -> None:
    for policy in (DEFAULT, STRICT):
        policy.split("https://api.openai.com/v1")
        policy.split("https://8.8.8.8/")
        policy.split("https://[2606:4700:4700::1111]/")


def test_the_allow_list_lets_a_named_host_or_network_through() -> None:
    policy = OutboundPolicy(
        allow_private=False,
        allowed_hosts=frozenset({"metadata-proxy.internal"}),
        allowed_networks=(ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("10.1.0.0/16")),
    )
    policy.split("http://169.254.169.254/")
    policy.split("http://10.1.2.3/")
    policy.split("http://metadata-proxy.internal/")
    with pytest.raises(OutboundRefused):
        policy.split("http://10.2.0.1/")


def test_the_policy_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VANE_ALLOW_PRIVATE_URLS", "false")
    monkeypatch.setenv("VANE_OUTBOUND_ALLOW", "judge.corp, 10.9.0.0/16 ,")
    policy = OutboundPolicy.from_env()
    assert not policy.allow_private
    assert policy.allowed_hosts == {"judge.corp"}
    assert policy.allowed_networks == (ipaddress.ip_network("10.9.0.0/16"),)
    monkeypatch.delenv("VANE_ALLOW_PRIVATE_URLS")
    assert OutboundPolicy.from_env().allow_private


async def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    await DEFAULT.check("http://localhost:1/")
    with pytest.raises(OutboundRefused) as refused:
        await STRICT.check("http://localhost:1/")
    assert refused.value.details["host"] == "localhost"
    with pytest.raises(OutboundRefused):
        await DEFAULT.check("http://no-such-host.invalid/")


def test_the_operators_judge_key_goes_only_to_the_operators_judge() -> None:
    from services.evaluator.config import JudgeDefaults
    from services.evaluator.judge import endpoint_for

    defaults = JudgeDefaults(base_url="https://api.openai.com/v1/", api_key="sk-operator")
    assert endpoint_for({}, defaults).api_key == "sk-operator"
    assert endpoint_for({"base_url": "https://api.openai.com/v1"}, defaults).api_key == "sk-operator"
    assert endpoint_for({"base_url": "https://collector.example/v1"}, defaults).api_key == ""
    assert endpoint_for({"base_url": "https://own.example/v1", "api_key": "k2"}, defaults).api_key == "k2"
