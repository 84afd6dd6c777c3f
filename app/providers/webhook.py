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

from app.errors import PermanentError, RateLimited, TransientError
from app.providers import retry_after
from app.providers.messages import Webhook
from app.settings import Settings

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


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allowed_hosts = frozenset(
            h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip())
        self._session: aiohttp.ClientSession | None = None

    def unconfigured_reason(self) -> str | None:
        return None if self.settings.webhook_secret else "webhooks are not configured (WEBHOOK_SECRET is unset)"

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
            timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    def signed_request(self, message: Webhook, key: str, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        assert self.settings.webhook_secret is not None
        body = json.dumps({"event": message.event, "id": key, "data": message.data},
                          separators=(",", ":"), default=str).encode()
        ts = int(time.time() if now is None else now)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.settings.webhook_secret.get_secret_value(), ts, body),
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
