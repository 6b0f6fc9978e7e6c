"""Where Vane may send a request that a user chose (judge endpoints, webhooks): never the cloud's
metadata service or link-local addresses, and private or loopback ones only while the operator
allows them.

- Always refused: link-local (169.254.0.0/16, fe80::/10, where every cloud's metadata service
  lives), the metadata names and addresses (metadata.google.internal, fd00:ec2::254,
  100.100.100.200), unspecified (0.0.0.0, which reaches this host), multicast and broadcast.
- Private and loopback (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, 127/8, ::1): allowed
  by default so that a local stack and its tests work; `VANE_ALLOW_PRIVATE_URLS=false` refuses them.
- `VANE_OUTBOUND_ALLOW`: hostnames or CIDRs (comma-separated) that pass whatever they resolve to.

A host name is resolved and every address it resolves to is checked. The clients check again when
they connect (`aiohttp_resolver`, `GuardedTransport`): a name that resolved to a public address at
check time and to the metadata address a moment later (DNS rebinding) is still refused, and every
redirect hop is checked as its own request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.common.errors import Invalid
from services.common.settings import env_str

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NETS = ipaddress.ip_network
ALWAYS_REFUSED: tuple[Network, ...] = (
    _NETS("169.254.0.0/16"),  # link-local: AWS, GCP, Azure, OpenStack metadata at 169.254.169.254
    _NETS("fe80::/10"),
    _NETS("fd00:ec2::254/128"),  # AWS's IPv6 metadata address
    _NETS("100.100.100.200/32"),  # Alibaba Cloud's metadata address
    _NETS("0.0.0.0/8"),  # "this host": connecting to 0.0.0.0 reaches local listeners
    _NETS("::/128"),
    _NETS("224.0.0.0/4"),
    _NETS("ff00::/8"),
    _NETS("255.255.255.255/32"),
)
PRIVATE: tuple[Network, ...] = (
    _NETS("127.0.0.0/8"),
    _NETS("::1/128"),
    _NETS("10.0.0.0/8"),
    _NETS("172.16.0.0/12"),
    _NETS("192.168.0.0/16"),
    _NETS("100.64.0.0/10"),  # carrier-grade NAT, and some clouds' internal ranges
    _NETS("198.18.0.0/15"),
    _NETS("fc00::/7"),
)
METADATA_HOSTS = frozenset(
    (
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    )
)
_NAT64 = _NETS("64:ff9b::/96")


class OutboundRefused(Invalid):
    """A URL Vane will not call: the message says which rule refused it."""


def _embedded_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (::ffff:a.b.c.d, 64:ff9b::a.b.c.d), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = True
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    resolve_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> OutboundPolicy:
        hosts, networks = set(), []
        for item in (x.strip().lower() for x in env_str("VANE_OUTBOUND_ALLOW", "").split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        allow_private = env_str("VANE_ALLOW_PRIVATE_URLS", "true").strip().lower() not in ("0", "false", "no", "off")
        return cls(allow_private, frozenset(hosts), tuple(networks))

    # -- the rules ---------------------------------------------------------------------------------
    def refusal(self, address: Address) -> str | None:
        """Why this address may not be called, or None."""
        address = _embedded_ipv4(address)
        if any(address in net for net in self.allowed_networks):
            return None
        if any(address in net for net in ALWAYS_REFUSED):
            return f"{address} is a link-local, metadata or unspecified address"
        if not self.allow_private and (any(address in net for net in PRIVATE) or address.is_private):
            return f"{address} is a private or loopback address (VANE_ALLOW_PRIVATE_URLS=false)"
        return None

    def check_addresses(self, host: str, addresses: Iterable[Address]) -> None:
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise OutboundRefused(f"refusing to call {host}: {reason}", {"host": host, "address": str(address)})

    def split(self, url: str) -> tuple[str, Address | None]:
        """The URL's host, and its address when the host is an IP literal; refuses what needs no DNS."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise OutboundRefused(f"refusing to call {url!r}: only http and https URLs are allowed")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise OutboundRefused(f"refusing to call {url!r}: the URL has no host")
        if host in self.allowed_hosts:
            return host, None
        if host in METADATA_HOSTS:
            raise OutboundRefused(f"refusing to call {host}: it is a cloud metadata service", {"host": host})
        try:
            address: Address | None = ipaddress.ip_address(host)
        except ValueError:
            address = _legacy_ipv4(host)
        if address is not None:
            self.check_addresses(host, [address])
        return host, address

    async def check(self, url: str) -> None:
        """Refuse the URL (OutboundRefused) unless every address its host resolves to is allowed."""
        host, address = self.split(url)
        if address is not None or host in self.allowed_hosts:
            return
        self.check_addresses(host, await self.resolve(host, urlsplit(url).port or 443))

    async def resolve(self, host: str, port: int) -> list[Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.resolve_timeout_seconds
            )
        except (OSError, TimeoutError) as exc:
            raise OutboundRefused(f"refusing to call {host}: it does not resolve ({exc})", {"host": host}) from None
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]

    # -- clients that check when they connect ----------------------------------------------------
    def aiohttp_resolver(self) -> Any:
        """An aiohttp resolver that refuses what the policy refuses, at connection time."""
        import aiohttp

        policy = self

        class CheckingResolver(aiohttp.ThreadedResolver):
            async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
                found = await super().resolve(host, port, family)
                if host.rstrip(".").lower() not in policy.allowed_hosts:
                    # OutboundRefused, not OSError: aiohttp passes it through rather than retrying as DNS trouble
                    policy.check_addresses(host, [ipaddress.ip_address(str(r["host"]).split("%")[0]) for r in found])
                return found

        return CheckingResolver()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport that checks every request it sends, each redirect hop included:
    `httpx.AsyncClient(transport=GuardedTransport(policy))` (a refusal raises OutboundRefused)."""

    def __init__(self, policy: OutboundPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy or OutboundPolicy.from_env()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.policy.check(str(request.url))
        return await super().handle_async_request(request)


def _legacy_ipv4(host: str) -> Address | None:
    """Hosts such as 2852039166 or 0xa9fea9fe or 169.254.43518 that C resolvers read as IPv4."""
    if not host or not all(c in "0123456789abcdefx." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def check_urls(urls: Sequence[str], policy: OutboundPolicy | None = None) -> None:
    """Check several URLs with one policy (the environment's when none is given)."""
    policy = policy or OutboundPolicy.from_env()
    for url in urls:
        await policy.check(url)
