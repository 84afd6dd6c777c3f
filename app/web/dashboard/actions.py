"""The dashboard's actions (POST forms) and its login and logout.

Every action is wrapped by `guard.action` (write session, same origin, then its form with the CSRF
token) and ends in a 303 back to the page it came from, so reloading never repeats it. Login and
logout check what they can before reading their form, and read it under the same limits.
"""

from __future__ import annotations

from aiohttp import web

from app.config import SettingsError
from app.errors import AppError
from app.queue import control
from app.web.auth import authenticate
from app.web.dashboard import reads, session
from app.web.dashboard.form import form_of
from app.web.dashboard.guard import (
    CROSS_SITE,
    DASHBOARD,
    HEADERS,
    Dashboard,
    action,
    back,
    form_or_refusal,
    redirect,
    refuse,
    render,
    same_origin,
)
from app.web.dashboard.session import Viewer


def _queue(request: web.Request, d: Dashboard) -> str:
    name = request.match_info["queue"]
    if name not in reads.all_queues(d.state.res):
        raise web.HTTPNotFound(text=f"unknown queue {name!r}")
    return name


def _letter_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such dead letter") from None


def _form_queue(request: web.Request, d: Dashboard) -> str | None:
    name = form_of(request).get("queue")
    return name if name in reads.all_queues(d.state.res) else None


@action
async def pause(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    await control.pause(d.state.res.redis, _queue(request, d))
    return back(request, "paused")


@action
async def resume(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    await control.resume(d.state.res.redis, _queue(request, d))
    return back(request, "resumed")


@action
async def retry_letter(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    res = d.state.res
    try:
        await res.dlq.retry(_letter_id(request), res.enqueuer)
    except (AppError, SettingsError):
        return back(request, "retry_refused")
    return back(request, "retried")


@action
async def delete_letter(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    deleted = await reads.delete_dead_letter(d.state.res, _letter_id(request))
    return back(request, "deleted" if deleted else "gone")


@action
async def retry_all(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    res = d.state.res
    await res.dlq.retry_all(res.enqueuer, queue=_form_queue(request, d))
    return back(request, "retried_all")


@action
async def delete_all(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    await d.state.res.dlq.purge(queue=_form_queue(request, d))
    return back(request, "deleted_all")


async def login_form(request: web.Request) -> web.StreamResponse:
    d = request.app[DASHBOARD]
    if not d.tokens:
        return redirect("/")
    return render(request, d, Viewer(None, can_act=False), "login.html", section="login", failed=False)


async def login(request: web.Request) -> web.StreamResponse:
    """A right token sets the session cookie; a wrong one shows the form again with 401."""
    d = request.app[DASHBOARD]
    if not d.tokens:
        return redirect("/")
    if not same_origin(request):
        return refuse("The login form must be sent from this site.")
    form = await form_or_refusal(request, d)  # no session to check first: read under the form's limits
    if isinstance(form, web.Response):
        return form
    token = authenticate(d.tokens, form.get("token"))
    if token is None:
        return render(request, d, Viewer(None, can_act=False), "login.html", status=401, section="login",
                      failed=True)
    response = redirect("/")
    # Secure when the request came over TLS, to the sidecar or to a trusted proxy (app/web/proxies.py).
    response.set_cookie(session.COOKIE_NAME, session.issue(d.key, token), max_age=session.SESSION_TTL_S,
                        path="/", httponly=True, samesite="Strict", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """Delete the cookie; like an action it needs the session's CSRF token (any session may)."""
    d = request.app[DASHBOARD]
    viewer = session.read(d.key, d.tokens, request.cookies.get(session.COOKIE_NAME))
    if viewer is None or not same_origin(request):
        return refuse(CROSS_SITE)
    form = await form_or_refusal(request, d)
    if isinstance(form, web.Response):
        return form
    if not session.csrf_ok(d.key, viewer, form.get("csrf")):
        return refuse(CROSS_SITE)
    response = web.Response(status=303, headers={**HEADERS, "Location": "/login"})
    response.del_cookie(session.COOKIE_NAME, path="/", samesite="Strict", secure=request.secure)
    return response

