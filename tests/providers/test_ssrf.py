"""The webhook SSRF guard: no address that leads to a private IPv4, however it is written.

IPv6 can carry an IPv4 address that a gateway on the path connects to (NAT64, 6to4, Teredo) or
that the host's own stack uses (IPv4-mapped). Python's `is_global` judges only the IPv6 address,
so each form is checked for the IPv4 address inside it.
"""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from app.config import Settings
from app.errors import PermanentError
from app.providers.webhook import NonPublicAddress, PublicOnlyResolver, WebhookChannel, is_public


@pytest.mark.parametrize(("address", "public"), [
    # NAT64, well-known prefix (RFC 6052): 64:ff9b::a.b.c.d
    ("64:ff9b::10.0.0.1", False), ("64:ff9b::a00:1", False), ("64:ff9b::127.0.0.1", False),
    ("64:ff9b::169.254.169.254", False), ("64:ff9b::192.168.1.1", False), ("64:ff9b::8.8.8.8", True),
    # NAT64, local-use prefix (RFC 8215) with a /96 and a /48 placement
    ("64:ff9b:1::10.0.0.1", False), ("64:ff9b:1:a00:0:100::", False), ("64:ff9b:1::8.8.8.8", False),
    # 6to4 (2002:AABB:CCDD::/48 carries AA.BB.CC.DD)
    ("2002:a00:1::1", False), ("2002:7f00:1::1", False), ("2002:a9fe:a9fe::1", False),
    ("2002:808:808::1", True),
    # IPv4-mapped and the deprecated IPv4-compatible form
    ("::ffff:10.0.0.1", False), ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True),
    ("::127.0.0.1", False), ("::10.0.0.1", False),
    # Teredo: server and client IPv4 (the client obfuscated) — the prefix is not global anyway
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False), ("2001::1", False),
    # Ordinary addresses keep their old answers
    ("2606:4700:4700::1111", True), ("93.184.215.14", True), ("::1", False), ("fe80::1", False),
    ("fe80::1%eth0", False), ("fd00::1", False), ("ff02::1", False), ("100.64.0.1", False),
    # Not an address at all: never public
    ("", False), ("not-an-ip", False), ("10.0.0.1\x00", False), ("1" * 5000, False),
])
def test_an_address_is_public_only_if_every_ipv4_inside_it_is(address: str, public: bool) -> None:
    """NAT64, 6to4, Teredo, IPv4-mapped and IPv4-compatible addresses are judged by the IPv4
    address they lead to; anything unparsable is refused rather than raising."""
    assert is_public(address) is public


def _channel() -> WebhookChannel:
    return WebhookChannel(Settings.load({"WEBHOOK_SECRET": "s"}).webhook)


@pytest.mark.parametrize("url", [
    "http://[64:ff9b::a00:1]/hook", "https://[2002:a00:1::1]:8443/", "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data",
])
def test_a_literal_url_hiding_a_private_ipv4_is_refused_before_connecting(url: str) -> None:
    """check_url refuses literal IPv6 hosts that embed a private IPv4, as a permanent error."""
    with pytest.raises(PermanentError, match="non-public"):
        _channel().check_url(url)


@pytest.mark.parametrize("url", ["http://[64:ff9b::808:808]/hook", "https://example.com/hook"])
def test_public_literal_and_named_urls_pass_the_pre_check(url: str) -> None:
    """A NAT64 address of a public IPv4, and host names (checked at connect time), pass."""
    _channel().check_url(url)


class FixedResolver(AbstractResolver):
    """A resolver that answers every name with the given addresses (no DNS traffic)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6, proto=0, flags=0)
                for a in self.addresses]

    async def close(self) -> None:
        return None


class FixedPublicOnlyResolver(PublicOnlyResolver):
    """The real guard over a resolver with scripted answers (DNS rebinding to NAT64)."""

    def __init__(self, allowed: frozenset[str], *addresses: str) -> None:
        super().__init__(allowed)
        self._inner = FixedResolver(*addresses)  # type: ignore[assignment]  # any resolver will do


async def test_a_name_resolving_to_an_embedded_private_ipv4_is_refused_at_connect_time() -> None:
    """A host name that resolves to 64:ff9b::10.0.0.1 is refused even among public answers;
    an allowed host is not checked."""
    guard = FixedPublicOnlyResolver(frozenset({"intranet.example"}), "2606:4700::1", "64:ff9b::a00:1")
    with pytest.raises(NonPublicAddress, match="64:ff9b::a00:1"):
        await guard.resolve("hooks.example", 443)
    assert len(await guard.resolve("intranet.example", 443)) == 2
    await guard.close()
