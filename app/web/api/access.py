"""Who may call which route: every route needs a bearer token from API_TOKEN, a read-only one
(`ro:`) only for reading, except the routes named in OPEN_ROUTES, which verify their callers
themselves (Google's push notifications carry a channel token, never a bearer token).

Without any configured token the API is off: every guarded route answers 404 `api_disabled`
with a sentence saying how to turn it on, and nothing else about the API is revealed.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from app.web.api.context import TOKEN, api_of
from app.web.api.errors import ApiError, Handler
from app.web.auth import authenticate, bearer

log = structlog.get_logger(__name__)

OPEN_ROUTES = frozenset({"calendar-google-push"})
"""Route names that need no bearer token (each authenticates its caller itself)."""
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="workhorse"'}


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    tokens = api_of(request).tokens
    if not tokens:
        raise ApiError(404, "api_disabled", "the HTTP API is off: set API_TOKEN (comma-separated bearer tokens) "
                                            "and restart the worker to turn it on")
    presented = bearer(request.headers.get("Authorization"))
    token = authenticate(tokens, presented)
    if token is None:
        log.info("api_token_refused", method=request.method, path=request.path, presented=presented is not None)
        message = "wrong bearer token" if presented else "missing bearer token: send Authorization: Bearer TOKEN"
        raise ApiError(401, "unauthorized", message, headers=_CHALLENGE)
    if token.read_only and request.method not in READ_METHODS:
        raise ApiError(403, "forbidden", f"{token.label} is read-only (ro:); {request.method} needs a full token")
    request[TOKEN] = token
    response = await handler(request)
    if request.method not in READ_METHODS:  # who changed what, by token label (never its value)
        log.info("api_write", method=request.method, path=request.path, token=token.label, status=response.status)
    return response
