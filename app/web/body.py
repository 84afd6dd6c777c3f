"""Request bodies, read the one way every route of the sidecar reads them: up to a size cap, with an
idle and a total timeout, so a client that announces a body and sends it slowly, or never, holds a
connection for seconds, not for as long as it likes.

The header timeout (SIDECAR_HEADER_TIMEOUT_S, app/web/__init__.py) ends once the head of a request
has arrived; nothing in aiohttp bounds the body after it. So no handler reads `request.content`,
`request.read()` or `request.post()` itself: the API reads its JSON (app/web/api/body.py) and the
dashboard its forms (app/web/dashboard/form.py) through `read_body`, each only after the caller's
credentials were checked where the route needs them. A body no handler reads is discarded by
aiohttp after the answer for at most SIDECAR_HEADER_TIMEOUT_S (the runner's lingering time).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = structlog.get_logger(__name__)

BODY_TOTAL_TIMEOUT_S = 60.0
"""However steadily a body trickles in, it must be complete within this (unless the caller asks for less)."""


class BodyRefused(Exception):
    """A body that was not read whole, and the status that says why."""

    def __init__(self, status: int, code: str, why: str) -> None:
        super().__init__(why)
        self.status, self.code, self.why = status, code, why


def _too_large(limit_bytes: int) -> BodyRefused:
    return BodyRefused(413, "body_too_large", f"the body is larger than {limit_bytes} bytes")


async def read_body(request: web.Request, limit_bytes: int, *, idle_timeout_s: float,
                    total_timeout_s: float = BODY_TOTAL_TIMEOUT_S) -> bytes:
    """The body, refused (413) as soon as it passes `limit_bytes`, announced or not; 408 when the
    client goes silent for `idle_timeout_s` mid-body or takes longer than `total_timeout_s`; 400
    when the connection is closed, or the body broken (bad chunking), before its end."""
    try:
        return await _read(request, limit_bytes, idle_timeout_s, total_timeout_s)
    except BodyRefused as refused:
        # One line, no traceback: anyone can send a slow or oversized body.
        log.info("sidecar_body_refused", client=request.remote, method=request.method, path=request.path,
                 status=refused.status, reason=refused.code)
        raise


async def _read(request: web.Request, limit_bytes: int, idle_timeout_s: float, total_timeout_s: float) -> bytes:
    if request.content_length is not None and request.content_length > limit_bytes:
        raise _too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(total_timeout_s):
            while True:
                async with asyncio.timeout(idle_timeout_s):
                    chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit_bytes:
                    raise _too_large(limit_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, "body_timeout", "the body did not arrive in time") from None
    except ConnectionResetError:
        # aiohttp ends the body this way when the client hangs up mid-body ("Connection lost"): the
        # answer will not reach it, but the handler ends here instead of as a 500 with a traceback.
        raise BodyRefused(400, "body_incomplete", "the connection closed before the body was complete") from None
    except HttpProcessingError as exc:  # a broken chunked or compressed body
        raise BodyRefused(400, "body_malformed", f"the body is malformed ({exc.message})") from None
    return b"".join(chunks)
