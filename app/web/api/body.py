"""Request bodies: read up to API_MAX_BODY_BYTES, then parsed as JSON no deeper than the engine's
payload limit allows (plus the envelope around a payload), scanned before json.loads recurses."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from aiohttp import web

from app.queue.payload import MAX_DEPTH
from app.web.api.errors import ApiError

ENVELOPE_DEPTH = 2
"""A list of jobs, each an object holding its payload: the levels a body adds above a payload."""
BODY = "(body)"


BODY_TOTAL_TIMEOUT_S = 60.0
"""However steadily a body trickles in, it must be complete within this."""


async def read_limited(request: web.Request, limit_bytes: int, *, idle_timeout_s: float = 5.0) -> bytes:
    """The body, refused (413) as soon as it passes `limit_bytes`, announced or not; 408 when the
    client goes silent for `idle_timeout_s` mid-body or takes longer than BODY_TOTAL_TIMEOUT_S
    (the sidecar's header timeout does not cover a body, and a slow one holds a connection)."""
    if request.content_length is not None and request.content_length > limit_bytes:
        raise _too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TOTAL_TIMEOUT_S):
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
        raise ApiError(408, "body_timeout", "the body did not arrive in time", {BODY: "sent too slowly"}) from None
    return b"".join(chunks)


def _too_large(limit_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is larger than {limit_bytes} bytes (API_MAX_BODY_BYTES)",
                    {BODY: f"at most {limit_bytes} bytes"})


async def read_json(request: web.Request, limit_bytes: int, *, idle_timeout_s: float = 5.0) -> Any:
    """The body as JSON; 400 `invalid_json` naming `(body)` for anything that is not."""
    raw = await read_limited(request, limit_bytes, idle_timeout_s=idle_timeout_s)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if not text.strip():
        raise _invalid("empty; a JSON body is required")
    if nesting_depth(text) > MAX_DEPTH + ENVELOPE_DEPTH:
        raise _invalid(f"nested deeper than {MAX_DEPTH + ENVELOPE_DEPTH} levels; a payload may be nested "
                       f"at most {MAX_DEPTH}")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _invalid(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # NaN, Infinity, 1e400, or an integer of more than 4300 digits
        raise _invalid(f"not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """Python's json reads 1e400 as infinity, which no other JSON reader would accept back."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range for a JSON number")
    return value


def _invalid(why: str) -> ApiError:
    return ApiError(400, "invalid_json", f"the body is {why}" if why[0].islower() else why, {BODY: why})


def nesting_depth(text: str, *, stop_past: int = MAX_DEPTH + ENVELOPE_DEPTH) -> int:
    """The deepest bracket nesting outside strings (counting stops once past `stop_past`).
    Strings are cut out by a regular expression and only brackets are walked in Python, so a
    body of megabytes holds the event loop for milliseconds, not seconds."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_past:
                    break
        else:
            depth -= 1
    return deepest


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
