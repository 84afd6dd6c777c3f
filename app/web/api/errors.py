"""Every API failure as one JSON shape, naming the field when there is one:
`{"error": {"code": "invalid_payload", "message": "...", "fields": {"orgId": "Field required"}}}`.

    ApiError (status, code)        raised by the API's own checks (body, query, auth)
    InvalidPayload       422       the engine's: a payload or envelope field is wrong
    UnknownJob           422       no job of that name (field `name`)
    UnknownQueue         404       not in the queue table
    NotFound             404       job or dead letter absent
    JobRunning           409       a running job cannot be withdrawn
    web.HTTPException    its own   aiohttp's (no route, wrong method)
    NotReplicated        503   written, but not confirmed by REDIS_MIN_REPLICAS_ACK replicas in time;
                                   retried with the same jobId (or Idempotency-Key), it is one job
    RedisError, OSError, asyncpg   503   a dependency is down; the client may retry
    anything else        500       logged with its traceback; the body says nothing more
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from app.config import UnknownQueue
from app.errors import InvalidPayload, NotFound, UnknownJob
from app.queue.durability import NotReplicated
from app.queue.handles import JobRunning
from app.web.api.context import reply

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})


def error_reply(status: int, code: str, message: str, fields: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if fields:
        body["fields"] = dict(fields)
    return reply({"error": body}, status=status, headers=dict(headers or {}))


def _translate(exc: Exception) -> ApiError | None:
    """The ApiError an exception of the engine stands for; None for one the API does not expect."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidPayload):
        return ApiError(422, "invalid_payload", str(exc), exc.problems)
    if isinstance(exc, UnknownJob):
        return ApiError(422, "unknown_job", str(exc), {"name": str(exc)})
    if isinstance(exc, UnknownQueue):
        return ApiError(404, "unknown_queue", str(exc), {"queue": str(exc)})
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, JobRunning):
        return ApiError(409, "job_running", str(exc))
    if isinstance(exc, NotReplicated):
        return ApiError(503, "not_replicated", f"not acknowledged: {exc}; retry with the same jobId or Idempotency-Key",
                        headers={"Retry-After": "1"})
    if isinstance(exc, RedisError | OSError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return ApiError(503, "unavailable", f"a dependency is unavailable ({type(exc).__name__}); retry later",
                        headers={"Retry-After": "5"})
    return None


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_reply(exc.status, exc.reason.lower().replace(" ", "_"),
                           f"{exc.reason}: {request.method} {request.path}", headers=allow)
    except Exception as exc:
        known = _translate(exc)
        if known is None:
            log.exception("api_request_failed", method=request.method, path=request.path)
            return error_reply(500, "internal_error", "the request failed; the worker's log has the traceback")
        return error_reply(known.status, known.code, known.message, known.fields, known.headers)
