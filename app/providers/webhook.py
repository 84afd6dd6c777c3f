"""Signed webhooks: a JSON POST with an HMAC-SHA256 signature, refused to private addresses.

Receivers verify `X-Signature` (see `verify()`) over the timestamp and the body, and reject
timestamps older than a few minutes, so a captured request cannot be replayed later. The SSRF
guard checks every address a host name resolves to at connect time (so DNS rebinding between
a check and the connect does not help) and literal IPs before the request; redirects are not
followed, since a redirect could point anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from app.config.services import WebhookSettings
from app.errors import PermanentError, RateLimited, TransientError
from app.providers import retry_after
from app.providers.messages import Webhook

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
REPLAY_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance_s: float = REPLAY_TOLERANCE_S) -> bool:
    """True when `signature` is ours over (timestamp, body) and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class NonPublicAddress(OSError):
    """A webhook host that resolves to a private, loopback or otherwise internal address."""


def _blocked_address(exc: BaseException) -> NonPublicAddress | None:
    """The NonPublicAddress behind aiohttp's connector error, if that was the cause."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, NonPublicAddress):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


# IPv6 prefixes whose addresses carry an IPv4 address that a gateway on the path translates to
# and connects to (RFC 6052 NAT64: the well-known /96 and the local-use /48 of RFC 8215; the
# deprecated IPv4-compatible ::/96). Python's `is_global` judges the IPv6 address alone, so
# 64:ff9b::10.0.0.1 would pass as "global" and reach 10.0.0.1 through the NAT64 gateway.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# RFC 6052 section 2.2: where the 32 IPv4 bits sit for each prefix length (bits 64-71 are zero).
_RFC6052_PREFIXES = (32, 40, 48, 56, 64, 96)


def _rfc6052_ipv4(ip: ipaddress.IPv6Address, prefix_len: int) -> ipaddress.IPv4Address:
    """The IPv4 address embedded after a NAT64 prefix of `prefix_len` bits."""
    bits = format(int(ip), "0128b")
    suffix = (bits[prefix_len:64] + bits[72:])[:32] if prefix_len < 96 else bits[96:]
    return ipaddress.IPv4Address(int(suffix, 2))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may lead to: IPv4-mapped, 6to4, Teredo (server and
    client), NAT64 and IPv4-compatible. Empty for an ordinary IPv6 address. The local-use NAT64
    prefix's length is the operator's choice, so every RFC 6052 placement counts; one of them
    is nearly always in 0.0.0.0/8, which refuses that prefix in practice (an internal gateway)."""
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64_WELL_KNOWN or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(_rfc6052_ipv4(ip, 96))
    elif ip in _NAT64_LOCAL_USE:
        found.extend(_rfc6052_ipv4(ip, n) for n in _RFC6052_PREFIXES if n >= 48)
    return found


def is_public(address: str) -> bool:
    """Whether a webhook may connect to `address`: globally routable, not multicast, and (for
    IPv6) every IPv4 address it embeds is public too. Anything unparsable is not public."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(v4.is_global and not v4.is_multicast for v4 in embedded_ipv4(ip))
    return True


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses hosts with any non-public address."""

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed_hosts

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[
            ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() not in self._allowed:
            blocked = [r["host"] for r in results if not is_public(r["host"])]
            if blocked:
                raise NonPublicAddress(f"webhook host {host} resolves to a non-public address ({', '.join(blocked)})")
        return results

    async def close(self) -> None:
        await self._inner.close()


class WebhookChannel:
    name = "webhook"
    provider = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.allowed_hosts = frozenset(h.lower() for h in settings.allowed_hosts)
        self._session: aiohttp.ClientSession | None = None

    def unconfigured_reason(self) -> str | None:
        return None if self.settings.secret else "webhooks are not configured (WEBHOOK_SECRET is unset)"

    def check_url(self, url: str) -> None:
        """Refuse what the resolver cannot see: other schemes and literal private IPs."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentError(f"webhook URL must be http(s) with a host: {url!r}")
        host = parts.hostname.lower()
        if host in self.allowed_hosts:
            return
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked by PublicOnlyResolver when connecting
        if not is_public(str(literal)):
            raise PermanentError(f"webhook URL points at a non-public address: {host}")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(self.allowed_hosts))
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    def signed_request(self, message: Webhook, key: str, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        assert self.settings.secret is not None
        body = json.dumps({"event": message.event, "id": key, "data": message.data},
                          separators=(",", ":"), default=str).encode()
        ts = int(time.time() if now is None else now)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.settings.secret.get_secret_value(), ts, body),
            "Idempotency-Key": key,
        }
        return body, headers

    async def deliver(self, message: Webhook, key: str) -> str:
        self.check_url(message.url)
        body, headers = self.signed_request(message, key)
        try:
            async with self._http().post(message.url, data=body, headers=headers, allow_redirects=False) as resp:
                _raise_for_status(resp.status, resp.headers.get("Retry-After"), message.url)
                return resp.headers.get("X-Request-Id") or str(resp.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            blocked = _blocked_address(exc)
            if blocked is not None:
                raise PermanentError(str(blocked)) from exc
            raise TransientError(f"webhook {message.url} failed: {exc!r}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _raise_for_status(status: int, retry_after_value: str | None, url: str) -> None:
    if 200 <= status < 300:
        return
    if status == 429:
        raise RateLimited(f"webhook {url} answered 429", retry_after_s=retry_after.parse(retry_after_value))
    if status >= 500:
        raise TransientError(f"webhook {url} answered {status}")
    if 300 <= status < 400:
        raise PermanentError(f"webhook {url} answered a redirect ({status}); redirects are not followed")
    raise PermanentError(f"webhook {url} answered {status}")
