"""The engine's front door: everything that runs queues in one process, started and stopped
together, and a read-only snapshot of it for the health checks, the API and the dashboard.

It owns one QueueWorker per served queue (app/queue/worker.py), the wake hub (wake-ups, handoffs,
keyspace notifications, pause state), the liveness thread, the cron ticker, the outbox relay,
the BullMQ ingress when BULLMQ_PREFIX is set (app/queue/bullmq/), the stats flush and, at
shutdown, the order things stop in. The process around it
(app/runtime/process.py) keeps signals, sd_notify and the sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from app.queue import handoff, keys
from app.queue.bullmq import BullmqIngress
from app.queue.execution import job_functions
from app.queue.finishing import Ownership
from app.queue.liveness import Liveness, new_instance_id
from app.queue.notifications import KeyspaceNotifications
from app.queue.outbox import OutboxRelay
from app.queue.resources import EngineResources
from app.queue.ticker import CronTicker, TickerEntry
from app.queue.wake import WakeHub
from app.queue.worker import QueueWorker

log = structlog.get_logger(__name__)

STATS_FLUSH_S = 1.0
BULLMQ_GRACE_S = 1.0
"""At shutdown, after the running jobs: how long the BullMQ ingress may take to record outcomes
that have just arrived (the rest are re-delivered by BullMQ to the next process)."""


@dataclass(frozen=True, slots=True)
class WorkerState:
    queue: str
    concurrency: int
    running_here: int
    polling: bool
    timeout_s: float


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """What the engine is doing, as of the moment it was taken."""

    instance: str
    """This process among all (host:pid:nonce), as in its job locks and liveness key."""
    queues: tuple[str, ...]
    workers: tuple[WorkerState, ...]
    started_monotonic: float
    stopping: bool
    hub_connected: bool
    """Wake-ups and handoffs arrive (else every worker polls at the fallback)."""
    keyspace: KeyspaceNotifications
    """Whether stock arq clients' enqueues wake workers at once."""

    @property
    def all_polling(self) -> bool:
        return all(w.polling for w in self.workers)


class Engine:
    def __init__(self, res: EngineResources, queues: list[str], cron: Iterable[TickerEntry]) -> None:
        self.res = res
        self.queues = list(queues)
        self.instance = new_instance_id()
        settings = res.settings
        self.hub = WakeHub(res.redis, self.queues, self.instance, metrics=res.metrics,
                           keyspace=settings.redis.keyspace_notifications, on_abort=self._aborts_announced)
        self.liveness = Liveness(res.redis_url, self.instance, ttl_s=settings.process_liveness_ttl_s)
        self.cron = CronTicker(res, cron)
        self.outbox = OutboxRelay(res)  # job_outbox rows -> queues (OUTBOX_RELAY)
        # BullMQ producers' jobs -> queues (BULLMQ_PREFIX); a bad BULLMQ_QUEUES stops start-up here.
        self.bullmq = BullmqIngress(res) if settings.bullmq.prefix else None
        self.workers: list[QueueWorker] = []
        self.started_monotonic = time.monotonic()
        self.stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._abort_check: asyncio.Task[None] | None = None

    def snapshot(self) -> EngineSnapshot:
        table = self.res.settings.queues
        return EngineSnapshot(
            instance=self.instance, queues=tuple(self.queues), started_monotonic=self.started_monotonic,
            stopping=self.stopping, hub_connected=self.hub.connected.is_set(), keyspace=self.hub.keyspace,
            workers=tuple(WorkerState(w.queue_name, w.max_jobs, w.job_counter, w.polling,
                                      table.queue(w.queue_name).timeout_s) for w in self.workers))

    async def start(self) -> None:
        """Start everything; the workers poll from here on."""
        await asyncio.to_thread(self.liveness.start)
        self.hub.start()
        registry = self.res.registry
        for name in self.queues:
            functions = job_functions(registry, name, self.res, Ownership(self.res.redis, name, self.instance))
            worker = QueueWorker(self.res.settings.queues.queue(name), functions, self.res, self.hub,
                                 self.res.new_redis())
            self.workers.append(worker)
            self._loops.append(worker.start())
        self.cron.start()
        self.outbox.start()
        if self.bullmq is not None:
            for worker in self.workers:
                worker.on_finished = self.bullmq.finished_here
            await self.bullmq.start()
        self._background.append(asyncio.create_task(self._flush_stats_forever(), name="stats-flush"))
        self._background.append(asyncio.create_task(self._check_aborts_forever(), name="abort-check"))

    async def wait_crashed(self) -> asyncio.Task[None]:
        """Return the worker loop that ended (it never should: a bug); wait until one does."""
        done, _ = await asyncio.wait(self._loops, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done))

    async def stop(self, timeout_s: float) -> int:
        """Stop taking jobs, wait up to `timeout_s` for the running ones, cancel the rest (they are
        queued again without using an attempt), and close what was started. Returns how many
        jobs were cancelled."""
        self.stopping = True
        await self.cron.stop()
        await self.outbox.stop()
        if self.bullmq is not None:
            await self.bullmq.stop_taking()
        for w in self.workers:
            w.stop_taking_jobs()
        with contextlib.suppress(RedisError, OSError):  # else a handoff meanwhile is given back
            await handoff.leave_idle_sets(self.res.redis, self.queues, self.instance)
        in_flight = [t for w in self.workers for t in w.tasks.values() if not t.done()]
        if in_flight:
            log.info("shutdown_waiting_for_jobs", in_flight=len(in_flight), timeout_s=timeout_s)
            await asyncio.wait(in_flight, timeout=timeout_s)
        left = sum(1 for w in self.workers for t in w.tasks.values() if not t.done())
        if left:
            log.warning("shutdown_requeueing_jobs", jobs=left)
        if self.bullmq is not None:
            await self.bullmq.stop(BULLMQ_GRACE_S)
        await asyncio.gather(*(w.shutdown() for w in self.workers))
        await self.hub.stop()
        await asyncio.to_thread(self.liveness.stop)
        for task in [*self._background, *self._loops]:
            task.cancel()
        await asyncio.gather(*self._background, *self._loops, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.res.stats.flush(self.res.redis)
        return left

    async def _flush_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_S)
            try:
                await self.res.stats.flush(self.res.redis)
            except (RedisError, OSError) as exc:
                log.debug("stats_flush_failed", error=str(exc))

    def _aborts_announced(self) -> None:
        """Job.abort() added to arq's abort set: look for running jobs to cancel (once at a time)."""
        if self._abort_check is None or self._abort_check.done():
            self._abort_check = asyncio.create_task(self._cancel_aborted())

    async def _check_aborts_forever(self) -> None:
        """Without keyspace notifications nothing announces an abort: look every heartbeat while
        jobs run (arq's own workers look at every poll)."""
        while True:
            await asyncio.sleep(self.res.settings.job.heartbeat_s)
            if not self.hub.keyspace.on:
                await self._cancel_aborted()

    async def _cancel_aborted(self) -> None:
        running = {job_id: (w, enqueued_ms) for w in self.workers
                   for job_id, enqueued_ms in w.running_since_ms().items()}
        if not running:
            return
        ids = list(running)
        try:
            scores = await self.res.redis.zmscore(keys.ABORT_SET, ids)
        except (RedisError, OSError) as exc:
            log.debug("abort_check_failed", error=str(exc))
            return
        for job_id, score in zip(ids, scores, strict=True):
            worker, enqueued_ms = running[job_id]
            # An abort older than the job is for an earlier job of the same id (arq #485).
            if score is not None and score >= enqueued_ms and worker.abort(job_id):
                log.info("job_abort_requested", queue=worker.queue_name, job_id=job_id)
