"""The request side of the dashboard: who is asking (session cookie), whether they may act
(CSRF token, Origin/Referer, a write token), and rendering pages with security headers.

Handlers are wrapped by `page` (GET: a viewer is required, else the login form) or `action`
(POST: a viewer who may act, from this origin, with the session's CSRF token; else 403), so
no handler checks anything itself. An action's form is read only after the session and origin
were checked (form.py): a client without a session is refused before its body is waited for.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from app.web.auth import ApiToken, parse_tokens
from app.web.body import BodyRefused
from app.web.dashboard import session
from app.web.dashboard.form import FORM, Form, form_of, read_form
from app.web.dashboard.reads import pretty
from app.web.dashboard.session import Viewer
from app.web.dashboard.throughput import Throughput
from app.web.state import WebState

NONE = "\u2013"  # an en dash: no value
HEADERS = {
    # Everything comes from this origin: no inline script or style, no CDN, no framing.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NOTICES = {
    "paused": "Queue paused: no process takes its jobs until it is resumed.",
    "resumed": "Queue resumed.",
    "retried": "Dead letter enqueued again.",
    "retried_all": "Dead letters enqueued again.",
    "retry_refused": "Not retried: already retried or deleted, or its payload no longer validates.",
    "deleted": "Dead letter deleted.",
    "deleted_all": "Dead letters deleted.",
    "gone": "That dead letter no longer exists.",
}
CROSS_SITE = "Missing or wrong CSRF token, or the request came from another site."


@dataclass
class Dashboard:
    """The dashboard's state, kept in the sidecar app under DASHBOARD."""

    state: WebState
    tokens: tuple[ApiToken, ...]
    key: bytes
    templates: jinja2.Environment
    throughput: Throughput = field(default_factory=Throughput)

    @classmethod
    def build(cls, state: WebState) -> Dashboard:
        tokens = parse_tokens(state.res.settings.api.token)
        return cls(state, tokens, session.signing_key(tokens), _environment())


DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard", Dashboard)
VIEWER: web.AppKey[Viewer] = web.AppKey("dashboard_viewer", Viewer)

Page = Callable[[web.Request, Dashboard, Viewer], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def viewer_of(request: web.Request, d: Dashboard) -> Viewer | None:
    """No tokens configured: everyone, read-only. Else the session's viewer, or None."""
    if not d.tokens:
        return Viewer(None, can_act=False)
    return session.read(d.key, d.tokens, request.cookies.get(session.COOKIE_NAME))


def same_origin(request: web.Request) -> bool:
    """The request came from a page of this host (Origin, else Referer); neither: refused. The
    host is the one a trusted proxy names (app/web/proxies.py), else the Host header."""
    origin = request.headers.get("Origin")
    source = origin if origin and origin != "null" else request.headers.get("Referer")
    return bool(source) and urlsplit(source).netloc == request.host


def page(handler: Page) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        d = request.app[DASHBOARD]
        viewer = viewer_of(request, d)
        if viewer is None:
            return redirect("/login")
        return await handler(request, d, viewer)

    return wrapped


def action(handler: Page) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        d = request.app[DASHBOARD]
        viewer = viewer_of(request, d)
        if viewer is None or not viewer.can_act:
            return refuse("This session may not change anything (no write token).")
        if not same_origin(request):
            return refuse(CROSS_SITE)
        form = await form_or_refusal(request, d)
        if isinstance(form, web.Response):
            return form
        if not session.csrf_ok(d.key, viewer, form.get("csrf")):
            return refuse(CROSS_SITE)
        request[FORM] = form
        return await handler(request, d, viewer)

    return wrapped


async def form_or_refusal(request: web.Request, d: Dashboard) -> Form | web.Response:
    """The request's form, or the plain answer to one that was too large, too slow or malformed."""
    try:
        return await read_form(request, d.state.res.settings.sidecar.header_timeout_s)
    except BodyRefused as refused:
        return web.Response(status=refused.status, text=f"{refused.status}: {refused.why}\n", headers=HEADERS)


def refuse(why: str) -> web.Response:
    return web.Response(status=403, text=f"403 Forbidden: {why}\n", headers=HEADERS)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def back(request: web.Request, notice: str) -> web.Response:
    """303 to the form's `next` (a path of this site), with a notice code."""
    target = form_of(request).get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    return redirect(f"{target}{'&' if '?' in target else '?'}notice={notice}")


def render(request: web.Request, d: Dashboard, viewer: Viewer, template: str, status: int = 200,
           **context: Any) -> web.Response:
    """The page, or only its `live` block when the page's script asks for a refresh."""
    here = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "notice"])
    tpl = d.templates.get_template(template)
    values = dict(context, viewer=viewer, here=str(here), notice=NOTICES.get(request.query.get("notice", "")),
                  csrf=session.csrf_token(d.key, viewer) if viewer.nonce else "", can_act=viewer.can_act,
                  auth_on=bool(d.tokens))
    if request.headers.get("X-Live") == "1" and "live" in tpl.blocks:
        body = "".join(tpl.blocks["live"](tpl.new_context(values)))
    else:
        body = tpl.render(values)
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("app.web.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(ago=ago, age=age, utc=utc, pretty=pretty)
    return env


def age(seconds: float | None) -> str:
    """1.2 s, 42 s, 5 min, 3 h 20 min, 2 d 4 h."""
    if seconds is None:
        return NONE
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def ago(ms: int | float | None) -> str:
    if ms is None:
        return NONE
    delta = time.time() - ms / 1000
    return f"{age(delta)} ago" if delta >= 0 else f"in {age(-delta)}"


def utc(value: int | float | str | dt.datetime | None) -> str:
    if value is None:
        return NONE
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
