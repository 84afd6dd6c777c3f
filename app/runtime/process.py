"""The worker process: every served queue's Worker, the cron ticker and the sidecar in one loop.

Lifecycle (the runbook's): settings -> logging -> Redis and PostgreSQL (waiting while they come
up) -> migrations -> sidecar -> signal handlers -> workers -> READY=1. On SIGTERM/SIGINT: stop
taking jobs, wait for in-flight ones up to SHUTDOWN_TIMEOUT_MS, cancel the rest (they run again
on the next start, without using an attempt), close pools, stop the sidecar, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from app.cron import cron_table
from app.queue import handoff, stats, tracing
from app.queue.execution import Runtime
from app.queue.liveness import Liveness, new_instance_id
from app.queue.outbox import OutboxRelay
from app.queue.registry import Registry
from app.queue.ticker import CronTicker
from app.queue.wake import WakeHub
from app.queue.worker import QueueWorker
from app.runtime.resources import Resources, open_resources
from app.runtime.sd_notify import Notifier
from app.runtime.sidecar import make_runner, make_site
from app.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

# File descriptors a process needs besides its sidecar connections: pools, pub/sub, subprocesses.
_OWN_DESCRIPTORS = 1024
STATS_FLUSH_S = 1.0
LOOP_LAG_SAMPLE_S = 0.25


class Process:
    def __init__(self, res: Resources, queue_names: list[str]) -> None:
        self.res = res
        self.queue_names = queue_names
        self.runtime = Runtime(res)
        self.instance = new_instance_id()
        """This worker among all, in job locks, liveness, handoffs and the dashboard."""
        self.hub = WakeHub(res.redis, queue_names, self.instance)
        self.workers: list[QueueWorker] = []
        served = set(queue_names)
        self.cron = CronTicker(res, [e for e in cron_table(res.settings) if res.registry.spec(e.job).queue in served])
        self.stopping = False
        self.started_monotonic = time.monotonic()
        self.loop_lag_max_s = 0.0
        self.notifier = Notifier(res.settings.notify_socket)
        self.liveness = Liveness(res.redis_url, self.instance, ttl_s=res.settings.process_liveness_ttl_s)
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.sidecar: web.AppRunner | None = None
        """The sidecar's runner while it serves (its connections, for the tests' bounds)."""

    def request_stop(self, signum: int | None = None) -> None:
        if not self._stop.is_set():
            log.info("shutdown_requested", signal=signal.Signals(signum).name if signum else None)
        self._stop.set()

    async def run(self) -> int:
        """Serve until asked to stop; return the exit code."""
        settings = self.res.settings
        runner = self.sidecar = make_runner(self)
        await runner.setup()
        site = make_site(runner, settings)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SettingsError(
                f"invalid setting HEALTH_PORT: cannot listen on {settings.health_host}:{settings.health_port} "
                f"({exc.strerror or exc}); set HEALTH_PORT (or HEALTH_HOST)"
            ) from None
        log.info("sidecar_listening", host=settings.health_host, port=_bound_port(runner))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            tracing.start(settings)  # tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT is set
            return await self._serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await runner.cleanup()
            await asyncio.to_thread(tracing.stop)  # tracing: export the spans still batched

    async def _serve(self) -> int:
        await asyncio.to_thread(self.liveness.start)
        self.hub.start()
        for name in self.queue_names:
            config = self.res.settings.queues.queue(name)
            pool = await self.res.new_redis()
            self.workers.append(QueueWorker(config, self.res.registry, self.runtime, self.hub, pool))
        worker_tasks = [asyncio.create_task(w.async_run(), name=f"worker:{w.queue_name}") for w in self.workers]
        self.cron.start()
        self.outbox = OutboxRelay(self.res)  # job_outbox rows -> queues (OUTBOX_RELAY)
        self.outbox.start()
        self._spawn(self._flush_stats_forever())
        self._spawn(self._watch_loop_lag())
        if self.res.settings.watchdog_usec:
            self._spawn(self._ping_watchdog(self.res.settings.watchdog_usec / 1e6 / 2))
        self.notifier.notify("READY=1")
        log.info("worker_started", queues=self.queue_names)
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop, *worker_tasks], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        if stop not in done:
            crashed = next(iter(done))
            log.critical("worker_loop_ended", task=crashed.get_name(),
                         error=repr(crashed.exception()) if not crashed.cancelled() else "cancelled")
            exit_code = 1
        stop.cancel()
        await self._shutdown()
        for t in worker_tasks:
            t.cancel()
        await asyncio.gather(*worker_tasks, return_exceptions=True)
        return exit_code

    async def _shutdown(self) -> None:
        self.stopping = True
        self.notifier.notify("STOPPING=1")
        await self.cron.stop()
        await self.outbox.stop()
        for w in self.workers:
            w.stop_taking_jobs()
        with contextlib.suppress(RedisError, OSError):  # else a handoff meanwhile is given back
            await handoff.leave_idle_sets(self.res.redis, self.queue_names, self.instance)
        in_flight = [t for w in self.workers for t in w.tasks.values() if not t.done()]
        timeout_s = self.res.settings.shutdown_timeout_ms / 1000
        if in_flight:
            log.info("shutdown_waiting_for_jobs", in_flight=len(in_flight), timeout_s=timeout_s)
            await asyncio.wait(in_flight, timeout=timeout_s)
        left = sum(1 for w in self.workers for t in w.tasks.values() if not t.done())
        if left:
            log.warning("shutdown_requeueing_jobs", jobs=left)
        self.runtime.shutting_down = True
        await asyncio.gather(*(w.shutdown() for w in self.workers))
        await self.hub.stop()
        await asyncio.to_thread(self.liveness.stop)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.res.stats.flush(self.res.redis)
        log.info("worker_stopped", requeued=left)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._background.append(asyncio.create_task(coro))

    async def _flush_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_S)
            try:
                await self.res.stats.flush(self.res.redis)
            except (RedisError, OSError) as exc:
                log.debug("stats_flush_failed", error=str(exc))

    async def _watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        gauge, gauge_max = self.res.metrics.loop_lag, self.res.metrics.loop_lag_max
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_LAG_SAMPLE_S)
            lag = max(0.0, loop.time() - before - LOOP_LAG_SAMPLE_S)
            gauge.set(lag)
            if lag > self.loop_lag_max_s:
                self.loop_lag_max_s = lag
                gauge_max.set(lag)

    async def _ping_watchdog(self, every_s: float) -> None:
        while True:
            if all(w.polling for w in self.workers):
                self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(every_s)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return None


def make_room_for_connections(max_connections: int) -> None:
    """Raise the soft limit on open files toward the hard one, so SIDECAR_MAX_CONNECTIONS sockets
    fit beside the process's own (systemd's default soft limit is 1024, its hard one far above)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _OWN_DESCRIPTORS
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        log.warning("open_file_limit_low", limit=raised, wanted=wanted,
                    hint="raise LimitNOFILE (systemd) or lower SIDECAR_MAX_CONNECTIONS")


async def serve(settings: Settings, registry: Registry, queues: list[str]) -> int:
    """Run the worker process until SIGTERM/SIGINT; return its exit code."""
    make_room_for_connections(settings.sidecar_max_connections)
    async with open_resources(settings, registry, apply_migrations=True) as res:
        await stats.prune_running(res.redis, queues)
        # What start-up built (modules, pools, the registry: ~150k objects) lives as long as the
        # process. Frozen, the cyclic collector never walks it again: a full collection of it
        # would stall the loop, health endpoints included, for tens of milliseconds.
        gc.freeze()
        return await Process(res, queues).run()
