"""`/health`, `/health/live`, `/health/ready`, `/health/detailed` and `/metrics`: answered from
the engine's snapshot, the process's metrics and a check of Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from app import __version__
from app.config import Settings, redact_url
from app.queue import sentinel, stats
from app.queue.engine import EngineSnapshot
from app.web.state import STATE, WebState

# A dependency check that takes longer than this counts as down.
CHECK_TIMEOUT_S = 2.0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", live)  # the runbook's checklist curls /health
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/detailed", detailed)
    app.router.add_get("/metrics", metrics)


async def live(request: web.Request) -> web.Response:
    """200 while the event loop turns (this answer is the proof)."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """200 only when Redis and PostgreSQL answer and every worker polls; else 503 and why."""
    state = request.app[STATE]
    deps = await check_dependencies(state)
    engine = state.snapshot()
    reasons = [f"{name}: {d['error']}" for name, d in deps.items() if d["status"] != "up"]
    reasons += [f"worker {w.queue} is not polling" for w in engine.workers if not w.polling]
    if engine.stopping:
        reasons.append("shutting down")
    if reasons:
        return web.json_response({"status": "unavailable", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


async def detailed(request: web.Request) -> web.Response:
    return web.json_response(await describe(request.app[STATE]))


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await refresh_gauges(state)
    return web.Response(body=state.res.metrics.render(), content_type="text/plain", charset="utf-8",
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


async def check_dependencies(state: WebState) -> dict[str, dict[str, Any]]:
    res = state.res
    redis, postgres = await asyncio.gather(_timed(res.redis.ping()), _timed(res.db.fetchval("SELECT 1")))
    return {"redis": redis, "postgres": postgres}


async def describe(state: WebState) -> dict[str, Any]:
    res = state.res
    engine = state.snapshot()
    deps = await check_dependencies(state)
    deps["redis"]["url"] = redact_url(res.redis_url)
    primary = await _safe(sentinel.primary_address(res.redis), None)
    if primary is not None:  # behind Sentinel: the server the sentinels name now
        deps["redis"]["primary"] = f"{primary[0]}:{primary[1]}"
    deps["postgres"]["url"] = redact_url(res.database_url)
    queues: dict[str, Any] = {}
    try:
        current = await stats.read(res.redis, list(engine.queues))
        dlq = await res.dlq.depth()
    except Exception as exc:  # the endpoint still answers when a dependency is down
        current, dlq = {}, {}
        deps.setdefault("stats", {"status": "down", "error": str(exc)})
    for w in engine.workers:
        row: dict[str, Any] = current[w.queue].as_json() if w.queue in current else {}
        row.update(concurrency=w.concurrency, inFlightHere=w.running_here, polling=w.polling,
                   deadLetters=dlq.get(w.queue, 0))
        queues[w.queue] = row
    return {
        "status": "ok" if all(d["status"] == "up" for d in deps.values()) else "degraded",
        "version": __version__,
        "process": {"id": stats.PROCESS_ID, "uptimeS": round(time.monotonic() - engine.started_monotonic, 1),
                    "stopping": engine.stopping, "loopLagMaxS": round(state.loop_lag_max_s(), 4)},
        "dependencies": deps,
        "queues": queues,
        "parkedDeadLetters": await _safe(res.dlq.parked_count(), None),
        "cron": await _safe(state.cron.describe(), []),
        "breakers": {p: s.name.lower().replace("_", "-") for p, s in res.breakers.states().items()},
        "config": describe_config(res.settings, engine),
    }


def describe_config(settings: Settings, engine: EngineSnapshot) -> dict[str, Any]:
    """The settings that shape how this process works, for an operator comparing processes.
    Only numbers, names and modes: never a URL, key or password."""
    queues = {}
    for name in engine.queues:
        q = settings.queues.queue(name)
        r = q.retry
        limit = q.rate_limit
        queues[name] = {"concurrency": q.concurrency, "timeoutS": q.timeout_s,
                        "rateLimit": {"max": limit.max, "durationMs": limit.duration_ms} if limit else None,
                        "retry": {"attempts": r.attempts, "baseDelayS": r.base_delay_s, "maxDelayS": r.max_delay_s,
                                  "factor": r.factor, "jitter": r.jitter}}
    return {
        "wakeMode": "pubsub" if engine.hub_connected else "poll",
        # Stock arq clients publish no wake-up: what wakes workers for their jobs.
        "arqClients": {"wakeMode": "keyspace" if engine.keyspace.on else "sweep",
                       "keyspaceNotifications": engine.keyspace.detail},
        "redis": {"minReplicasAck": settings.redis.min_replicas_ack,
                  "replicasAckTimeoutMs": settings.redis.replicas_ack_timeout_ms},
        "pollFallbackMs": settings.poll_fallback_ms,
        "shutdownTimeoutMs": settings.shutdown_timeout_ms,
        "servedQueues": list(engine.queues),
        "queues": queues,
        "sidecar": {"headerTimeoutS": settings.sidecar.header_timeout_s,
                    "maxConnections": settings.sidecar.max_connections,
                    "listenBacklog": settings.sidecar.listen_backlog,
                    "trustedProxies": [str(n) for n in settings.trusted_proxies],
                    "allowedHosts": settings.allowed_hosts},
    }


async def _safe(coro: Any, default: Any) -> Any:
    try:
        return await coro
    except Exception:
        return default


async def refresh_gauges(state: WebState) -> None:
    res = state.res
    m = res.metrics
    for provider, breaker in res.breakers.states().items():
        m.breaker_state.labels(provider).set(int(breaker))
    try:
        current = await stats.read(res.redis, list(state.snapshot().queues))
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
