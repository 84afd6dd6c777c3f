"""The HTTP API (`/api/v1` on the sidecar): enqueue and inspect jobs, queues and dead letters
from any language, as the Enqueuer does from Python.

    POST   /jobs                   one job or a list (≤ 1000, all or nothing); Idempotency-Key
    GET    /jobs/{id}              status, progress, result or error, attempts
    DELETE /jobs/{id}              withdraw a queued or deferred job (409 while it runs)
    GET    /queues                 counts per queue
    POST   /queues/{q}/pause       pause everywhere; /resume resumes
    GET    /dlq                    dead letters; POST /dlq/{id}/retry; DELETE /dlq/{id}
    POST   /calendar/google/push   Google's push notifications (no bearer token)
    POST   /calendar/connections   store a newly authorised calendar connection
    GET    /openapi.json           OpenAPI 3.1, generated from the payload models

Every route but Google's push needs a bearer token of API_TOKEN (app/web/auth.py); without
one the API is off. Errors are JSON naming the field (app/web/api/errors.py).
"""

from __future__ import annotations

from aiohttp import web

from app.web.api import calendar, dlq, jobs, openapi, queues
from app.web.api.access import require_token
from app.web.api.context import API, Api, api_of, reply
from app.web.api.errors import json_errors
from app.web.auth import parse_tokens
from app.web.state import WebState

__all__ = ["create_api"]


def create_api(state: WebState) -> web.Application:
    """The /api/v1 sub-application; errors are turned into JSON outside the token check, so a
    refusal has the same shape as any other error."""
    settings = state.res.settings
    app = web.Application(middlewares=[json_errors, require_token])
    app[API] = Api(state.res, parse_tokens(settings.api.token), settings.api.max_body_bytes)
    for module in (jobs, queues, dlq, calendar):
        app.router.add_routes(module.routes)
    app.router.add_get("/openapi.json", openapi_document, name="openapi")
    return app


async def openapi_document(request: web.Request) -> web.Response:
    api = api_of(request)
    if api.openapi is None:
        api.openapi = openapi.build(api.res.registry)
    return reply(api.openapi)
