"""The sidecar: one aiohttp app served inside the worker's event loop — `/health/*` and `/metrics`
(health.py), the HTTP API at `/api/v1` (api/) and the dashboard at `/` (dashboard/) — reading
the engine's snapshot and the process's resources (state.py), never the process itself.

The server is bounded without dropping a request: a connection without a complete request is
closed after SIDECAR_HEADER_TIMEOUT_S, at most SIDECAR_MAX_CONNECTIONS are served at once with the
rest waiting in the listen backlog (site.py), and a tenth of them are kept for `/health/*` and
`/metrics` (admission.py), so a burst from the web app is served or waits instead of being cut
off, and the health probe still answers under a flood of slow uploads. Every body is read with a
size cap and timeouts (body.py); a request aiohttp cannot parse is one INFO line (server_log.py).

Behind a reverse proxy, the scheme and host a proxy in TRUSTED_PROXIES names are the request's,
and ALLOWED_HOSTS limits the hosts it answers to (proxies.py).
"""

from __future__ import annotations

from aiohttp import web

from app.config import Settings
from app.config.operations import SidecarSettings
from app.web import dashboard, health
from app.web.admission import admission_for
from app.web.api import create_api
from app.web.proxies import Proxies
from app.web.server_log import SERVER_LOG
from app.web.site import BoundedSite
from app.web.state import STATE, WebState


def create_app(state: WebState) -> web.Application:
    settings = state.res.settings
    # First the scheme and host (trusted proxies, ALLOWED_HOSTS), then admission: both before any handler.
    app = web.Application(middlewares=[Proxies.from_settings(settings).resolve,
                                       admission_for(settings.sidecar.max_connections).admit])
    app[STATE] = state
    health.add_routes(app)
    app.add_subapp("/api/v1", create_api(state))
    dashboard.setup(app, state)  # `/` and its pages
    return app


def make_runner(state: WebState) -> web.AppRunner:
    return runner_for(create_app(state), state.res.settings.sidecar)


def runner_for(app: web.Application, sidecar: SidecarSettings) -> web.AppRunner:
    """The sidecar's runner for `app`. aiohttp (3.14, which we run) starts the keep-alive timer when a
    connection is made and only stops it once a complete request has arrived, so `keepalive_timeout`
    is also the header timeout: a client that sends half a request line, or drips a byte a second,
    is closed when it runs out (tests/web/test_sidecar.py checks this holds for the aiohttp we run).

    A body is read by handlers under their own timeouts (app/web/body.py); one no handler read (a
    request refused before its body) is discarded after the answer for `lingering_time`, which is
    the header timeout too rather than aiohttp's 10 s. Requests aiohttp cannot parse are logged as
    one line (server_log.py)."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=sidecar.header_timeout_s,
                         lingering_time=sidecar.header_timeout_s, logger=SERVER_LOG)


def make_site(runner: web.AppRunner, settings: Settings) -> BoundedSite:
    return BoundedSite(runner, settings.health.host, settings.health.port,
                       max_connections=settings.sidecar.max_connections, backlog=settings.sidecar.listen_backlog)


__all__ = ["WebState", "create_app", "make_runner", "make_site", "runner_for"]
