"""What every API handler reads: the process's resources and the configured tokens, under one typed key."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from app.web.auth import ApiToken

if TYPE_CHECKING:
    from app.jobs.resources import Resources


@dataclass(slots=True)
class Api:
    res: Resources
    tokens: tuple[ApiToken, ...]
    """Parsed from API_TOKEN once; empty means the API is off."""
    max_body_bytes: int
    openapi: dict[str, Any] | None = field(default=None)
    """The OpenAPI document, built on first request (the registry never changes in a process)."""


API: web.AppKey[Api] = web.AppKey("api", Api)
TOKEN: web.RequestKey[ApiToken] = web.RequestKey("api_token", ApiToken)
"""The token that authenticated the request (absent on the open routes)."""


def api_of(request: web.Request) -> Api:
    return request.app[API]


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def dumps(data: Any) -> str:
    """JSON with datetimes as ISO-8601 (job outcomes and dead letters carry them)."""
    return json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":"))


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)
