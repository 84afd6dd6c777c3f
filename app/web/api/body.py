"""Request bodies: read up to API_MAX_BODY_BYTES with the sidecar's timeouts (app/web/body.py), then
parsed as JSON no deeper than the engine's payload limit allows (plus the envelope around a
payload), scanned before json.loads recurses."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

from app.queue.payload import MAX_DEPTH
from app.web.api.errors import ApiError
from app.web.body import BodyRefused, read_body

ENVELOPE_DEPTH = 2
"""A list of jobs, each an object holding its payload: the levels a body adds above a payload."""
BODY = "(body)"


async def read_limited(request: web.Request, limit_bytes: int, *, idle_timeout_s: float = 5.0) -> bytes:
    """The body, read by the sidecar's one body reader (app/web/body.py): 413 past `limit_bytes`,
    408 when it arrives too slowly, each as an ApiError naming `(body)`."""
    try:
        return await read_body(request, limit_bytes, idle_timeout_s=idle_timeout_s)
    except BodyRefused as refused:
        if refused.status == 413:
            raise ApiError(413, refused.code, f"{refused.why} (API_MAX_BODY_BYTES)",
                           {BODY: f"at most {limit_bytes} bytes"}) from None
        hint = "sent too slowly" if refused.status == 408 else refused.why
        raise ApiError(refused.status, refused.code, refused.why, {BODY: hint}) from None


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
