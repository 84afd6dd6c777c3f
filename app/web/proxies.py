"""Which scheme and host a request was made with, and whether the sidecar answers to that host.

Behind a reverse proxy that ends TLS the sidecar sees plain HTTP from the proxy's address; the
client's scheme and host come in headers the proxy sets (`Forwarded: proto=https;host=...`, else
X-Forwarded-Proto and X-Forwarded-Host). Anyone can send those headers, so they are believed only
from an address in TRUSTED_PROXIES, and then only their last value, the one the nearest proxy set;
from anyone else they are ignored. What is believed becomes the request's scheme and host for every
handler (`request.secure`, `request.host`): the session cookie is Secure when the proxy says https,
and dashboard actions must come from the host it names.

ALLOWED_HOSTS, when set, is checked against that host (its port is not compared) before any
handler: another host gets 400, which keeps a forged Host and DNS rebinding (a hostile page whose
domain was pointed at the sidecar) away from the dashboard and the API. `/health/*` and `/metrics`
also answer a host that is an IP address or `localhost`: what probes send (`Host: 127.0.0.1:3100`),
and what no rebinding page can send, since a browser sends the page's own domain.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

import structlog
from aiohttp import hdrs, web

from app.config import Settings
from app.web.admission import Handler, is_probe
from app.web.api.errors import error_reply

log = structlog.get_logger(__name__)

_SCHEMES = frozenset({"http", "https"})
_HOST = re.compile(r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
"""A Host value a proxy may name: a DNS name or an IP address, with an optional port."""


@dataclass(frozen=True, slots=True)
class Proxies:
    """TRUSTED_PROXIES and ALLOWED_HOSTS, applied to every request by the `resolve` middleware."""

    trusted: tuple[IPv4Network | IPv6Network, ...]
    allowed_hosts: frozenset[str]
    """Host names without port, lower case; empty: any host."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Proxies:
        return cls(tuple(settings.trusted_proxies), frozenset(host_name(h) for h in settings.allowed_hosts))

    def trusts(self, remote: str | None) -> bool:
        """Whether `remote` (the peer's address) is a trusted proxy."""
        if not self.trusted or remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def allows(self, request: web.Request) -> bool:
        """Whether the sidecar answers to the request's host (ALLOWED_HOSTS; probes by address)."""
        name = host_name(request.host)
        if not self.allowed_hosts or name in self.allowed_hosts:
            return True
        return is_probe(request.path) and (name == "localhost" or _is_address(name))

    @web.middleware
    async def resolve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.trusts(request.remote):
            request = believed(request)
        if not self.allows(request):
            host = request.host[:200]
            log.info("sidecar_host_refused", host=host, client=request.remote, path=request.path)
            return error_reply(400, "host_not_allowed", f"this sidecar does not answer to host {host!r} "
                                                        "(ALLOWED_HOSTS)")
        return await handler(request)


def believed(request: web.Request) -> web.Request:
    """`request` with the scheme and host its (trusted) proxy names; a value that is not a scheme
    or a host is ignored."""
    proto, host = forwarded(request)
    scheme = proto.lower() if proto and proto.lower() in _SCHEMES else None
    host = host if host and _HOST.fullmatch(host) else None
    if scheme is None and host is None:
        return request
    return request.clone(scheme=scheme or request.scheme, host=host or request.host)


def forwarded(request: web.Request) -> tuple[str | None, str | None]:
    """The proto and host the nearest proxy set: the last element of `Forwarded` when the request
    has one, else the last value of X-Forwarded-Proto and of X-Forwarded-Host."""
    if hdrs.FORWARDED in request.headers:
        nearest = request.forwarded[-1] if request.forwarded else {}
        return nearest.get("proto"), nearest.get("host")
    return _last(request, hdrs.X_FORWARDED_PROTO), _last(request, hdrs.X_FORWARDED_HOST)


def _last(request: web.Request, header: str) -> str | None:
    """The last of a header's comma-separated values, over all its lines."""
    values = [v.strip() for line in request.headers.getall(header, ()) for v in line.split(",")]
    return values[-1] if values and values[-1] else None


def host_name(host: str) -> str:
    """`Dash.Example.com:443` -> `dash.example.com`; `[::1]:3100` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return (name if colon and port.isdigit() else host).rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
