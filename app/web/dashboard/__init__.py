"""The dashboard: queues, worker processes, jobs, dead letters, cron and breakers on one
server-rendered site, served by the sidecar at `/` (Jinja2 templates and a small script and
stylesheet shipped in this package: no CDN, works offline).

Auth (app/web/auth.py's API_TOKEN): without a token the dashboard is open and read-only;
with tokens, a login form sets a signed session cookie (session.py); a `ro:` token's session
is read-only. Read-only pages render no action, and the server refuses actions anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from app.queue import stats
from app.web.dashboard import actions, processes, reads, views
from app.web.dashboard.guard import DASHBOARD, Dashboard
from app.web.dashboard.throughput import SAMPLE_EVERY_S
from app.web.state import WebState

log = structlog.get_logger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


def setup(app: web.Application, state: WebState) -> None:
    """Add the dashboard's routes, state and background sampler to the sidecar `app`."""
    app[DASHBOARD] = Dashboard.build(state)
    app.router.add_get("/", views.overview)
    app.router.add_get("/queues/{queue}", views.queue)
    app.router.add_get("/job", views.job)
    app.router.add_get("/dead-letters", views.dead_letters)
    app.router.add_get("/login", actions.login_form)
    app.router.add_post("/login", actions.login)
    app.router.add_post("/logout", actions.logout)
    app.router.add_post("/queues/{queue}/pause", actions.pause)
    app.router.add_post("/queues/{queue}/resume", actions.resume)
    app.router.add_post("/dead-letters/retry-all", actions.retry_all)
    app.router.add_post("/dead-letters/delete-all", actions.delete_all)
    app.router.add_post("/dead-letters/{id}/retry", actions.retry_letter)
    app.router.add_post("/dead-letters/{id}/delete", actions.delete_letter)
    app.router.add_static("/static", STATIC_DIR)
    app.cleanup_ctx.append(_background)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """While the sidecar runs: announce the queues this process serves, and sample throughput."""
    d = app[DASHBOARD]
    redis = d.state.res.redis
    engine = d.state.snapshot()
    with contextlib.suppress(RedisError, OSError):  # the dashboard shows the process without its queues
        await processes.announce(redis, engine.instance, list(engine.queues), int(time.time() * 1000))
    task = asyncio.create_task(_sample_forever(d), name="dashboard-throughput")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with contextlib.suppress(RedisError, OSError):
        await processes.withdraw(redis, engine.instance)


async def _sample_forever(d: Dashboard) -> None:
    names = reads.all_queues(d.state.res)
    while True:
        if d.throughput.wanted:
            try:
                d.throughput.record(await stats.read(d.state.res.redis, names))
            except (RedisError, OSError) as exc:
                log.debug("dashboard_sample_failed", error=str(exc))
        await asyncio.sleep(SAMPLE_EVERY_S)


__all__ = ["setup"]
