"""The health and metrics sidecar: a small aiohttp app served inside the worker's event loop.

Handlers only read state owned elsewhere (the process, its workers, stats in Redis); the HTTP
API and the dashboard mount here too. The server is bounded without dropping a request: a
connection without a complete request is closed after SIDECAR_HEADER_TIMEOUT_S, at most
SIDECAR_MAX_CONNECTIONS are served at once with the rest waiting in the listen backlog
(app/runtime/site.py), and a tenth of them are kept for `/health/*` and `/metrics`
(app/runtime/admission.py), so a burst from the web app is served or waits instead of being cut
off, and the health probe still answers under a flood of slow uploads.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from app import __version__
from app.queue import stats
from app.queue.engine import EngineSnapshot
from app.runtime.admission import admission_for
from app.runtime.site import BoundedSite
from app.settings import Settings, redact_url

if TYPE_CHECKING:
    from app.runtime.process import Process

PROCESS_KEY: web.AppKey[Process] = web.AppKey("process")
# A dependency check that takes longer than this counts as down.
CHECK_TIMEOUT_S = 2.0


def create_app(process: Process) -> web.Application:
    app = web.Application(middlewares=[admission_for(process.res.settings.sidecar_max_connections).admit])
    app[PROCESS_KEY] = process
    app.router.add_get("/health", live)  # the runbook's checklist curls /health
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/detailed", detailed)
    app.router.add_get("/metrics", metrics)
    from app.runtime.api import create_api  # (imported here only to keep this file's imports untouched)

    app.add_subapp("/api/v1", create_api(process))
    from app.runtime import dashboard  # (imported here, like the API, to keep this file's imports untouched)

    dashboard.setup(app, process)  # `/` and its pages; app/runtime/dashboard/__init__.py
    return app


async def live(request: web.Request) -> web.Response:
    """200 while the event loop turns (this answer is the proof)."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """200 only when Redis and PostgreSQL answer and every worker polls; else 503 and why."""
    process = request.app[PROCESS_KEY]
    deps = await check_dependencies(process)
    engine = process.engine.snapshot()
    reasons = [f"{name}: {d['error']}" for name, d in deps.items() if d["status"] != "up"]
    reasons += [f"worker {w.queue} is not polling" for w in engine.workers if not w.polling]
    if engine.stopping:
        reasons.append("shutting down")
    if reasons:
        return web.json_response({"status": "unavailable", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


async def detailed(request: web.Request) -> web.Response:
    process = request.app[PROCESS_KEY]
    return web.json_response(await describe(process))


async def metrics(request: web.Request) -> web.Response:
    process = request.app[PROCESS_KEY]
    await refresh_gauges(process)
    return web.Response(body=process.res.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await check
    except Exception as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                "latencyMs": round((time.perf_counter() - started) * 1000, 2)}
    return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}


async def check_dependencies(process: Process) -> dict[str, dict[str, Any]]:
    res = process.res
    redis, postgres = await asyncio.gather(_timed(res.redis.ping()), _timed(res.db.fetchval("SELECT 1")))
    return {"redis": redis, "postgres": postgres}


async def describe(process: Process) -> dict[str, Any]:
    res = process.res
    engine = process.engine.snapshot()
    deps = await check_dependencies(process)
    deps["redis"]["url"] = redact_url(res.redis_url)
    deps["postgres"]["url"] = redact_url(res.database_url)
    queues: dict[str, Any] = {}
    try:
        current = await stats.read(res.redis, list(engine.queues))
        dlq = await res.dlq.depth()
    except Exception as exc:  # the endpoint still answers when a dependency is down
        current, dlq = {}, {}
        deps.setdefault("stats", {"status": "down", "error": str(exc)})
    for w in engine.workers:
        row: dict[str, Any] = current[w.queue].as_dict() if w.queue in current else {}
        row.update(concurrency=w.concurrency, inFlightHere=w.running_here, polling=w.polling,
                   deadLetters=dlq.get(w.queue, 0))
        queues[w.queue] = row
    return {
        "status": "ok" if all(d["status"] == "up" for d in deps.values()) else "degraded",
        "version": __version__,
        "process": {"id": stats.PROCESS_ID, "uptimeS": round(time.monotonic() - engine.started_monotonic, 1),
                    "stopping": engine.stopping, "loopLagMaxS": round(process.loop_lag_max_s, 4)},
        "dependencies": deps,
        "queues": queues,
        "parkedDeadLetters": await _safe(res.dlq.parked_count(), None),
        "cron": await _safe(process.engine.cron.describe(), []),
        "breakers": {p: s.name.lower().replace("_", "-") for p, s in res.breakers.states().items()},
        "config": describe_config(process.res.settings, engine),
    }


def describe_config(settings: Settings, engine: EngineSnapshot) -> dict[str, Any]:
    """The settings that shape how this process works, for an operator comparing processes.
    Only numbers, names and modes: never a URL, key or password."""
    queues = {}
    for name in engine.queues:
        q = settings.queues.queue(name)
        r = q.retry
        queues[name] = {"concurrency": q.concurrency, "timeoutS": q.timeout_s,
                        "retry": {"attempts": r.attempts, "baseDelayS": r.base_delay_s, "maxDelayS": r.max_delay_s,
                                  "factor": r.factor, "jitter": r.jitter}}
    return {
        "wakeMode": "pubsub" if engine.hub_connected else "poll",
        # Stock arq clients publish no wake-up: what wakes workers for their jobs.
        "arqClients": {"wakeMode": "keyspace" if engine.keyspace.on else "sweep",
                       "keyspaceNotifications": engine.keyspace.detail},
        "pollFallbackMs": settings.poll_fallback_ms,
        "shutdownTimeoutMs": settings.shutdown_timeout_ms,
        "servedQueues": list(engine.queues),
        "queues": queues,
        "sidecar": {"headerTimeoutS": settings.sidecar_header_timeout_s,
                    "maxConnections": settings.sidecar_max_connections,
                    "listenBacklog": settings.sidecar_listen_backlog},
    }


async def _safe(coro: Any, default: Any) -> Any:
    try:
        return await coro
    except Exception:
        return default


async def refresh_gauges(process: Process) -> None:
    res = process.res
    m = res.metrics
    for provider, state in res.breakers.states().items():
        m.breaker_state.labels(provider).set(int(state))
    try:
        current = await stats.read(res.redis, process.queue_names)
        dlq = await res.dlq.depth()
    except Exception:
        return  # the scrape still returns the counters this process holds
    for q, s in current.items():
        m.queue_depth.labels(q, "waiting").set(s.waiting)
        m.queue_depth.labels(q, "active").set(s.active)
        m.queue_depth.labels(q, "delayed").set(s.delayed)
        m.paused.labels(q).set(1 if s.paused else 0)
        m.dlq_depth.labels(q).set(dlq.get(q, 0))
        m.oldest_waiting_age.labels(q).set(s.oldest_waiting_age_s or 0)


def make_runner(process: Process) -> web.AppRunner:
    """The sidecar's runner. aiohttp (3.14, which we run) starts the keep-alive timer when a connection is
    made and only stops it once a complete request has arrived, so `keepalive_timeout` is also
    the header timeout: a client that sends half a request line, or drips a byte a second, is
    closed when it runs out (tests/test_sidecar.py checks this holds for the aiohttp we run)."""
    return web.AppRunner(create_app(process), access_log=None,
                         keepalive_timeout=process.res.settings.sidecar_header_timeout_s)


def make_site(runner: web.AppRunner, settings: Settings) -> BoundedSite:
    return BoundedSite(runner, settings.health_host, settings.health_port,
                       max_connections=settings.sidecar_max_connections, backlog=settings.sidecar_listen_backlog)
