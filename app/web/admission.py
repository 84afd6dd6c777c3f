"""Admission: room on the sidecar is kept for health checks and metrics, whatever else arrives.

The site (app/web/site.py) serves at most SIDECAR_MAX_CONNECTIONS connections; requests other
than `/health/*` and `/metrics` may occupy all of them but a tenth. A request past that is
answered at once — `503` with `Retry-After`, never dropped — so the reserved tenth only ever
holds probes, which answer from memory, and requests being turned away: however many slow
uploads arrive, the health probe gets a connection within moments. Ordinary bursts of the web
app fit under the limit and are served in full.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from app.web.api.errors import error_reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

RETRY_AFTER_S = 1
_PROBES = ("/health", "/metrics")


def reserve_for_probes(max_connections: int) -> int:
    """Connections kept from requests other than probes: a tenth, at least one."""
    return max(1, max_connections // 10)


def is_probe(path: str) -> bool:
    """`/health`, `/health/...` and `/metrics`: answered from memory, never turned away."""
    return any(path == p or path.startswith(p + "/") for p in _PROBES)


class Admission:
    """Counts the requests in progress that are not probes, turning away those past `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_progress = 0

    @web.middleware
    async def admit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_probe(request.path):
            return await handler(request)
        if self.in_progress >= self.limit:
            return error_reply(503, "busy", f"the sidecar is handling {self.limit} requests; retry in {RETRY_AFTER_S}s",
                               headers={"Retry-After": str(RETRY_AFTER_S)})
        self.in_progress += 1
        try:
            return await handler(request)
        finally:
            self.in_progress -= 1


def admission_for(max_connections: int) -> Admission:
    return Admission(max(1, max_connections - reserve_for_probes(max_connections)))
