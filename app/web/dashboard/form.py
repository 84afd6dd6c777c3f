"""The dashboard's POST forms, read through the sidecar's one body reader (app/web/body.py) and held
to the limits of a request's head: a few kilobytes, complete within SIDECAR_HEADER_TIMEOUT_S.

A form is read only once the guard (guard.py) has checked who sends it, so a client without a
session is refused before its body is waited for; `POST /login`, which has no session to check,
still reads under these limits. A browser sends a dashboard form (a token, a CSRF token, the page
to return to) with its head or in the next packet; a client that drips one is cut off.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from app.web.body import BodyRefused, read_body

Form = MultiDictProxy[str]

FORM_MAX_BYTES = 65_536
"""Room for the longest form the dashboard sends: `next` holds a page's URL with its query (up to
aiohttp's 8 KB request line), percent-encoded to at most three times that, and a token."""
URLENCODED = "application/x-www-form-urlencoded"

FORM: web.RequestKey[Form] = web.RequestKey("dashboard_form", MultiDictProxy)
"""The form of an action, read by the guard before the action runs."""


async def read_form(request: web.Request, timeout_s: float) -> Form:
    """The urlencoded form of `request` (empty for a request without a body), read within
    `timeout_s`; BodyRefused for a form that is too large (413), too slow (408), of another type
    (415) or not UTF-8 (400)."""
    if not request.body_exists:
        return MultiDictProxy(MultiDict())
    if request.content_type != URLENCODED:
        raise BodyRefused(415, "form_type", f"a dashboard form is sent as {URLENCODED}")
    raw = await read_body(request, FORM_MAX_BYTES, idle_timeout_s=timeout_s, total_timeout_s=timeout_s)
    try:
        # strict_parsing off, as browsers send it; errors="strict": %FF is refused, not replaced.
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BodyRefused(400, "form_encoding", "the form is not urlencoded UTF-8") from None
    return MultiDictProxy(MultiDict(pairs))


def form_of(request: web.Request) -> Form:
    """The form the guard read for this action (every action is wrapped by `guard.action`)."""
    return request[FORM]
