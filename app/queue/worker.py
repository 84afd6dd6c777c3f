"""QueueWorker: one queue's consumer in this process — when to poll, what to start, its slots.

A worker polls its queue when woken (an enqueue's wake-up, a stock arq client's ZADD, a freed
slot, a resume), when its next deferred job falls due, or at the fallback poll; a fallback poll of
a queue last seen empty is skipped when the process's sweep (app/queue/wake.py) has looked since,
so an idle process sends one command per fallback, not one per queue. A poll is one Lua round trip
that reads the queue, claims what is due and starts it (app/queue/claims.py), taking over the jobs
of processes that died; an enqueue may also hand a job to an idle worker directly
(app/queue/handoff.py). Each started job runs in a task of its own (app/queue/running.py), its
finish batched with others'. Redis errors never end the loop: it backs off and polls again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.backoff import REDIS_OUTAGE_BACKOFF
from app.config.queue_table import QueueConfig
from app.queue import handoff
from app.queue.bookkeeping import Bookkeeping, Health
from app.queue.claims import Claimed, Claimer
from app.queue.clock import now_ms
from app.queue.execution import ABORTED, LOCK_LOST, SHUTDOWN, JobFunction
from app.queue.finishing import FinishBatcher
from app.queue.resources import EngineResources
from app.queue.running import Ended, Runner
from app.queue.wake import WakeHub

log = structlog.get_logger(__name__)

# At shutdown, how long the requeue writes of cancelled jobs may take before the pool closes.
_FINISH_GRACE_S = 5.0
# A worker is considered polling (for /health/ready) if it polled this recently.
_POLL_STALE_S = 10.0
# A lock outlives the queue's longest job by this much (arq's own margin).
_LOCK_MARGIN_S = 10.0


class QueueWorker:
    def __init__(self, queue: QueueConfig, functions: Mapping[str, JobFunction], res: EngineResources,
                 hub: WakeHub, pool: Redis) -> None:
        settings = res.settings
        self.queue_name, self.max_jobs, self.pool, self.hub = queue.name, queue.concurrency, pool, hub
        # The lock outlives any job of this queue (at least JOB_LOCK_TTL_S), so a live process
        # whose loop stalls never loses a running job. A killed process's jobs do not wait for it:
        # the claim takes over locks whose owner's liveness key has lapsed (app/queue/claims.py),
        # and the bookkeeping extends the locks of running jobs every heartbeat.
        longest_s = max((f.timeout_s for f in functions.values()), default=queue.timeout_s)
        self.lock_ttl_s = max(longest_s + _LOCK_MARGIN_S, settings.job.lock_ttl_s)
        self.read_limit = max(self.max_jobs * 5, 100)
        self.job_counter = 0
        """Slots taken: jobs claimed whose function has not ended yet."""
        self.tasks: dict[str, asyncio.Task[Ended]] = {}
        """Jobs running here (their finish included): id -> their task."""
        self.accepting = True
        self.redis_ok = True
        self.last_poll = time.monotonic()
        self.polls = 0
        """How often this worker has read its queue (the idle sweep makes most reads needless)."""
        self.loop_task: asyncio.Task[None] | None = None
        self.ended: Counter[Ended | None] = Counter()
        """How this worker's runs ended (None: a run whose finish could not be written)."""
        self._wake = hub.events[queue.name]
        self._fallback_s = settings.poll_fallback_ms / 1000
        hub.register(queue.name, self._fallback_s)
        hub.on_handoff[queue.name] = self.take_handoff
        self._runs = handoff.RunsHere()
        self._held_handoffs: list[Claimed] | None = None
        """While a poll is on its way: the handoffs that arrived meanwhile."""
        self._polled_at = float("-inf")
        self._seen_jobs: int | None = None
        """Jobs (waiting, deferred, running anywhere) the last read of the queue found."""
        self.books = Bookkeeping(pool, queue.name, hub.instance, lock_ttl_s=self.lock_ttl_s,
                                 heartbeat_s=settings.job.heartbeat_s, keep_results=settings.keep.results_per_queue,
                                 health_every_s=settings.health.check_interval_s)
        self._claimer = Claimer(pool, queue.name, hub.instance, lock_ttl_s=self.lock_ttl_s, read_limit=self.read_limit,
                                rate_limit=queue.rate_limit)
        finisher = FinishBatcher(pool, queue.name, hub.instance, durability=res.durability)
        self._runner = Runner(res, queue.name, functions, finisher,
                              slot_freed=self._free_slot, keep_completed_s=settings.keep.result_s,
                              keep_failed_s=settings.keep.failed_s, lock_ttl_s=self.lock_ttl_s,
                              heartbeat_s=settings.job.heartbeat_s)
        self._holding_slot: set[str] = set()
        """Jobs that hold a slot: claimed, function not yet ended (their finish may still be on its way)."""
        self._redis_failures = 0
        self.on_finished: Callable[[str], None] | None = None
        """Told each job that ended here, its result written (the BullMQ ingress, app/queue/bullmq/)."""
        # Read when /metrics is scraped: nothing to update per job.
        res.metrics.in_flight.labels(queue.name).set_function(lambda: self.job_counter)
        self._gauge_up = res.metrics.up.labels(queue.name)

    @property
    def polling(self) -> bool:
        return self.redis_ok and time.monotonic() - self.last_poll < max(_POLL_STALE_S, 3 * self._fallback_s)

    def start(self) -> asyncio.Task[None]:
        self.loop_task = asyncio.create_task(self._loop(), name=f"worker:{self.queue_name}")
        return self.loop_task

    def running_since_ms(self) -> Mapping[str, int]:
        """Jobs whose function runs here: id -> when their record says they were enqueued."""
        return self._runner.enqueued_ms

    def abort(self, job_id: str) -> bool:
        """Cancel a job whose function runs here (Job.abort()); False when it does not run here."""
        task = self._runner.in_function.get(job_id)
        if task is None:
            return False
        task.cancel(ABORTED)
        return True

    def _lock_lost(self, job_id: str) -> None:
        """Another process took this running job over (this one was cut off or stalled past its
        liveness TTL): stop running it, so its side effects stop here too; nothing is written."""
        task = self._runner.in_function.get(job_id)
        if task is not None:
            task.cancel(LOCK_LOST)

    def stop_taking_jobs(self) -> None:
        self.accepting = False
        self._wake.set()
        self.hub.on_handoff.pop(self.queue_name, None)

    async def shutdown(self) -> None:
        """Cancel the job functions still running (the runner requeues them), let finishes being
        written complete, then stop polling and close the pool."""
        # Left at stop_taking_jobs already (app/queue/engine.py); again, as a poll that was on its
        # way then may have entered it since. A stale entry only costs a give-back.
        with contextlib.suppress(RedisError, OSError):
            await handoff.leave_idle_sets(self.pool, [self.queue_name], self.hub.instance)
        running = {job_id: t for job_id, t in self.tasks.items() if not t.done()}
        for task in list(self._runner.in_function.values()):
            task.cancel(SHUTDOWN)
        if running:
            await asyncio.wait(running.values(), timeout=_FINISH_GRACE_S)
        self._reap_finished()
        if self.loop_task is not None and not self.loop_task.done():
            self.loop_task.cancel()
            await asyncio.wait([self.loop_task])
        with contextlib.suppress(RedisError, OSError):
            await self.books.forget_health()
        await self.pool.aclose(close_connection_pool=True)
        self._gauge_up.set(0)

    async def _loop(self) -> None:
        while True:
            await self._iteration()

    async def _iteration(self) -> None:
        next_due_ms: float | None = None
        try:
            woken = self._wake.is_set()
            self._wake.clear()
            # Reaped first: a job finished since the last poll is no longer "running here" to the
            # claim (a retry due at once is taken in this poll).
            self._reap_finished()
            if self._may_take_jobs() and self.job_counter < self.max_jobs and self._must_poll(woken):
                next_due_ms = await self._poll()
            for job_id in await self.books.beat(self._health()):
                self._lock_lost(job_id)
        except (RedisError, OSError) as exc:
            await self._redis_trouble(exc)
            return
        if not self.redis_ok:
            log.info("redis_recovered", queue=self.queue_name)
        self.redis_ok, self._redis_failures = True, 0
        self.last_poll = time.monotonic()
        self._gauge_up.set(1)
        await self._wait_for_work(next_due_ms)

    def _may_take_jobs(self) -> bool:
        return self.accepting and not self.hub.is_paused(self.queue_name)

    def _must_poll(self, woken: bool) -> bool:
        """Whether to read the queue now: always, unless this is a fallback poll of a queue last
        seen empty and the sweep has looked since (it wakes us when a queue fills unannounced)."""
        return woken or self._seen_jobs != 0 or not self.hub.swept_since(self._polled_at)

    async def _poll(self) -> float | None:
        """Start due jobs; return the score (ms) of the next deferred job, if any."""
        self._polled_at = time.monotonic()
        self.polls += 1
        now = now_ms()
        # Handoffs that arrive while the poll is on its way wait for its answer (so its limit
        # holds), and jobs being given back are not ours to take again meanwhile.
        self._held_handoffs = []
        try:
            found = await self._claimer.claim_due(now_ms=now, limit=self.max_jobs - self.job_counter,
                                                  running_here=[*self.tasks, *self.hub.giving_back],
                                                  reachable=self.hub.connected.is_set())
        except BaseException:
            self._take_held_handoffs()
            raise
        self._seen_jobs = found.due + (found.next_deferred_ms is not None)
        self.hub.saw(self.queue_name, has_jobs=bool(self._seen_jobs))
        for claim in found.claimed:
            if claim.was_ours and self._runs.has(claim):
                continue  # handed to us: its message arrived first (app/queue/handoff.py)
            if claim.taken_over:
                log.warning("job_reclaimed_from_dead_process", queue=self.queue_name, job_id=claim.job_id)
            self._start(claim, now)
        self._take_held_handoffs()  # after the poll's own jobs, whose slots it counted
        return found.next_deferred_ms

    def _take_held_handoffs(self) -> None:
        held, self._held_handoffs = self._held_handoffs or [], None
        for claim in held:
            self.take_handoff(claim)

    def take_handoff(self, claim: Claimed) -> None:
        """A job an enqueue handed to this process, already claimed for it (app/queue/handoff.py)."""
        if self._held_handoffs is not None:
            self._held_handoffs.append(claim)
            return
        if self._runs.has(claim):
            return  # a poll took it already: the message came late
        if self._may_take_jobs() and self.job_counter < self.max_jobs:
            self._start(claim, now_ms())
        else:
            self.hub.give_back(self.queue_name, claim.job_id)

    def _start(self, claim: Claimed, now: int) -> None:
        # Slots are counted by job_counter alone: a start never waits.
        self.job_counter += 1
        self._holding_slot.add(claim.job_id)
        self._runs.started(claim)
        task = asyncio.get_running_loop().create_task(self._runner.run(claim))
        task.add_done_callback(functools.partial(self._job_done, claim.job_id))
        self.tasks[claim.job_id] = task
        self.books.started(claim.job_id, now)

    def _free_slot(self, job_id: str) -> None:
        if job_id in self._holding_slot:
            self._holding_slot.discard(job_id)
            self.job_counter -= 1
            # A freed slot takes the next waiting job at once.
            self._wake.set()

    def _job_done(self, job_id: str, task: asyncio.Task[Ended]) -> None:
        self._free_slot(job_id)  # a task cancelled before it started never freed its slot
        ended = None if task.cancelled() or task.exception() is not None else task.result()
        self._tell_runs(job_id, ended)
        self.ended[ended] += 1
        if ended in (Ended.COMPLETED, Ended.FAILED, Ended.ABORTED):
            if self.on_finished is not None:
                self.on_finished(job_id)
        else:
            # Retried, requeued by shutdown, or its finish never written (it runs again). The slot
            # was freed before the new score was written, so the poll that took the next job may
            # have missed it: poll again to learn when it is due.
            self._wake.set()
        self.books.finished(job_id, completed=ended is Ended.COMPLETED)

    def _reap_finished(self) -> None:
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                # Told here too: its done callback (which also tells) may not have run yet.
                self._tell_runs(job_id, None if task.cancelled() or task.exception() else task.result())
                if not task.cancelled() and task.exception() is not None:
                    # The job's lock expires and the job runs again, so logging is enough.
                    exc = task.exception()
                    log.error("job_bookkeeping_failed", queue=self.queue_name, job_id=job_id,
                              error=f"{type(exc).__name__}: {exc}")

    def _tell_runs(self, job_id: str, ended: Ended | None) -> None:
        """A run with no finish written (None: Redis failed it; LOST: another process has the
        job) is not remembered as finished, or the poll that claims the job again would take it
        for a late handoff and skip it."""
        if ended is None or ended is Ended.LOST:
            self._runs.abandoned(job_id)
        else:
            self._runs.finished(job_id)

    def _health(self) -> Health:
        done = self.ended
        return Health(completed=done[Ended.COMPLETED], failed=done[Ended.FAILED] + done[Ended.ABORTED],
                      retried=sum(done.values()) - done[Ended.COMPLETED] - done[Ended.FAILED] - done[Ended.ABORTED],
                      running=sum(not t.done() for t in self.tasks.values()), queued=self._seen_jobs or 0)

    async def _wait_for_work(self, next_due_ms: float | None) -> None:
        timeout = self._fallback_s
        refresh_in = self.books.next_lock_refresh_in_s()
        if refresh_in is not None:
            # Running jobs' locks must be extended on time, whatever the fallback poll is.
            timeout = min(timeout, refresh_in)
        if next_due_ms is not None:
            timeout = min(timeout, max(0.0, (next_due_ms - now_ms()) / 1000))
        # asyncio.timeout, not wait_for: in 3.11 wait_for swallows a cancellation that arrives as
        # the event is set, and shutdown does exactly that (stop_taking_jobs, then cancel).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._wake.wait()

    async def _redis_trouble(self, exc: BaseException) -> None:
        if self.redis_ok:
            log.warning("redis_unavailable", queue=self.queue_name, error=str(exc))
        self.redis_ok = False
        self._gauge_up.set(0)
        self._redis_failures += 1
        self._reap_finished()
        await asyncio.sleep(REDIS_OUTAGE_BACKOFF.delay_s(self._redis_failures))
