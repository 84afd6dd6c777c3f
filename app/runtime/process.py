"""The worker process: the engine (app/queue/engine.py), signals, sd_notify and the sidecar.

Lifecycle (the runbook's): settings -> logging -> Redis and PostgreSQL (waiting while they come
up) -> migrations -> sidecar -> signal handlers -> engine -> READY=1. On SIGTERM/SIGINT: the
engine stops taking jobs, waits for in-flight ones up to SHUTDOWN_TIMEOUT_MS and cancels the rest
(they run again on the next start, without using an attempt); then the sidecar stops; exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import signal
from collections.abc import Coroutine
from typing import Any

import structlog
from aiohttp import web

from app.config import Settings, SettingsError
from app.cron import cron_table
from app.jobs.resources import Resources
from app.queue import stats, tracing
from app.queue.engine import Engine
from app.queue.registry import Registry
from app.runtime.sd_notify import Notifier
from app.runtime.startup import open_resources
from app.web import WebState, make_runner, make_site

log = structlog.get_logger(__name__)

# File descriptors a process needs besides its sidecar connections: pools, pub/sub, subprocesses.
_OWN_DESCRIPTORS = 1024
LOOP_LAG_SAMPLE_S = 0.25


class Process:
    def __init__(self, res: Resources, queue_names: list[str]) -> None:
        self.res = res
        self.queue_names = queue_names
        served = set(queue_names)
        self.engine = Engine(res, queue_names,
                             [e for e in cron_table(res.settings) if res.registry.spec(e.job).queue in served])
        self.loop_lag_max_s = 0.0
        self.notifier = Notifier(res.settings.notify_socket)
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
        runner = self.sidecar = make_runner(WebState(self.res, self.engine.snapshot, self.engine.cron,
                                                     lambda: self.loop_lag_max_s))
        await runner.setup()
        site = make_site(runner, settings)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SettingsError(
                f"invalid setting HEALTH_PORT: cannot listen on {settings.health.host}:{settings.health.port} "
                f"({exc.strerror or exc}); set HEALTH_PORT (or HEALTH_HOST)"
            ) from None
        log.info("sidecar_listening", host=settings.health.host, port=_bound_port(runner))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        try:
            tracing.start(settings.otel)  # tracing: on when OTEL_EXPORTER_OTLP_ENDPOINT is set
            return await self._serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await runner.cleanup()
            await asyncio.to_thread(tracing.stop)  # tracing: export the spans still batched

    async def _serve(self) -> int:
        await self.engine.start()
        self._spawn(self._watch_loop_lag())
        if self.res.settings.watchdog_usec:
            self._spawn(self._ping_watchdog(self.res.settings.watchdog_usec / 1e6 / 2))
        self.notifier.notify("READY=1")
        log.info("worker_started", queues=self.queue_names)
        stop = asyncio.create_task(self._stop.wait())
        crashed = asyncio.create_task(self.engine.wait_crashed())
        done, _ = await asyncio.wait([stop, crashed], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        if stop not in done:
            loop_task = crashed.result()
            log.critical("worker_loop_ended", task=loop_task.get_name(),
                         error=repr(loop_task.exception()) if not loop_task.cancelled() else "cancelled")
            exit_code = 1
        stop.cancel()
        crashed.cancel()
        self.notifier.notify("STOPPING=1")
        requeued = await self.engine.stop(self.res.settings.shutdown_timeout_ms / 1000)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        log.info("worker_stopped", requeued=requeued)
        return exit_code

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._background.append(asyncio.create_task(coro))

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
            if self.engine.snapshot().all_polling:
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
    make_room_for_connections(settings.sidecar.max_connections)
    async with open_resources(settings, registry, apply_migrations=True) as res:
        await stats.prune_running(res.redis, queues)
        # What start-up built (modules, pools, the registry: ~150k objects) lives as long as the
        # process. Frozen, the cyclic collector never walks it again: a full collection of it
        # would stall the loop, health endpoints included, for tens of milliseconds.
        gc.freeze()
        return await Process(res, queues).run()
