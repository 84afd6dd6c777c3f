"""QueueWorker: an arq Worker for one queue, with the parts arq leaves out.

Overrides of arq's private hooks (stable across 0.26-0.28, pinned in pyproject):
- `_poll_iteration`: waits for a wake-up (or the next deferred job's time, or a fallback
  poll) instead of sleeping `poll_delay`; honours pause; survives Redis errors. A fallback
  poll of a queue last seen empty is skipped when the process's sweep (app/wake.py) has
  looked since: an idle process sends one command per fallback, not one per queue.
- `start_jobs`: claims many due jobs in one Lua round trip instead of a WATCH/MULTI per id.
- `finish_failed_job`: failures that never reach the job function go to the dead-letter queue.
- `heart_beat`: extends running jobs' short in-progress locks, so a killed process's jobs run
  again within `JOB_LOCK_TTL_S` whatever their timeout.
- `record_health`: writes arq's health key (`arq --check`) without arq's extra ZCARD.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import datetime
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from app.backoff import Backoff
from app.queue import codec, keys, stats
from app.queue.execution import Runtime, arq_functions
from app.queue.registry import Registry
from app.queue.wake import WakeHub
from app.settings import QueueConfig

log = structlog.get_logger(__name__)

# ARGV: now_ms, lock_ttl_ms, limit, ids...; claims due ids not locked by anyone, up to limit.
# Returns a flat list id, score, id, score ...
_CLAIM_LUA = """
local now, ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  if #out >= 2 * limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('EXISTS', '%s' .. id) == 0 then
    redis.call('PSETEX', '%s' .. id, ttl, '1')
    out[#out+1] = id
    out[#out+1] = score
  end
end
return out
""" % (keys.IN_PROGRESS_PREFIX, keys.IN_PROGRESS_PREFIX)

# A worker that lost Redis looks again soon: jobs waiting on it are the cost of a slow retry.
_REDIS_BACKOFF = Backoff(initial_s=0.1, factor=2.0, cap_s=5.0, jitter=0.1)
# Running jobs are published to other processes at most this often.
_RUNNING_SYNC_S = 1.0
# A Worker is considered polling (for /health/ready) if it polled this recently.
_POLL_STALE_S = 10.0


class QueueWorker(Worker):
    def __init__(self, queue: QueueConfig, registry: Registry, runtime: Runtime, hub: WakeHub,
                 pool: ArqRedis) -> None:
        settings = runtime.res.settings
        super().__init__(
            functions=arq_functions(registry, queue.name, runtime),
            queue_name=queue.name,
            redis_pool=pool,
            handle_signals=False,  # the process handles signals once, for every Worker
            max_jobs=queue.concurrency,
            job_timeout=queue.timeout_s,
            keep_result=settings.keep_result_s,
            poll_delay=0,  # we wait for wake-ups in _poll_iteration instead
            health_check_interval=settings.health_check_interval_s,
            job_serializer=codec.dumps,
            job_deserializer=codec.loads,
            log_results=False,
        )
        # Short lock, extended by heart_beat while the job runs (arq: largest timeout + 10 s).
        self.in_progress_timeout_s = settings.job_lock_ttl_s
        self.runtime = runtime
        self.hub = hub
        self.accepting = True
        self.redis_ok = True
        self.last_poll = time.monotonic()
        self._wake = hub.events[queue.name]
        self._fallback_s = settings.poll_fallback_ms / 1000
        hub.register(queue.name, self._fallback_s)
        self._looked_at = float("-inf")
        self._seen_jobs: int | None = None
        """Jobs (waiting, deferred, running anywhere) the last read of the queue found."""
        self.queue_reads = 0
        """How often this worker has read its queue (the idle sweep makes most reads needless)."""
        self._heartbeat_s = settings.job_heartbeat_s
        self._last_lock_refresh = 0.0
        self._last_running_sync = 0.0
        self._started_ms: dict[str, int] = {}
        self._finished: list[str] = []
        self._synced_at_ms = 0
        self._claim = pool.register_script(_CLAIM_LUA)
        self._redis_failures = 0
        self._gauge_in_flight = runtime.res.metrics.in_flight.labels(queue.name)
        self._gauge_up = runtime.res.metrics.up.labels(queue.name)

    @property
    def polling(self) -> bool:
        return self.redis_ok and time.monotonic() - self.last_poll < max(_POLL_STALE_S, 3 * self._fallback_s)

    def stop_taking_jobs(self) -> None:
        self.accepting = False
        self._wake.set()

    async def shutdown(self) -> None:
        """Cancel what still runs (arq requeues it), then stop polling and close the pool.

        Replaces arq's close(), whose gather() raises when a job task was cancelled outright.
        """
        running = [t for t in self.tasks.values() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
        self._reap_finished()
        if self.main_task is not None and not self.main_task.done():
            self.main_task.cancel()
            await asyncio.wait([self.main_task])
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        await self.pool.aclose(close_connection_pool=True)
        self._gauge_up.set(0)

    async def _poll_iteration(self) -> None:
        next_due_ms: float | None = None
        try:
            woken = self._wake.is_set()
            self._wake.clear()
            self.allow_pick_jobs = self.accepting and not self.hub.is_paused(self.queue_name)
            if self.allow_pick_jobs and self.job_counter < self.max_jobs and self._must_look(woken):
                next_due_ms = await self._start_due_jobs()
            self._reap_finished()
            await self.heart_beat()
        except (RedisError, OSError) as exc:
            await self._redis_trouble(exc)
            return
        if not self.redis_ok:
            log.info("redis_recovered", queue=self.queue_name)
        self.redis_ok, self._redis_failures = True, 0
        self.last_poll = time.monotonic()
        self._gauge_up.set(1)
        await self._wait_for_work(next_due_ms)

    def _must_look(self, woken: bool) -> bool:
        """Whether to read the queue now: always, unless this is a fallback poll of a queue last
        seen empty and the sweep has looked since (it wakes us when a queue fills unannounced)."""
        return woken or self._seen_jobs != 0 or not self.hub.swept_since(self._looked_at)

    async def _start_due_jobs(self) -> float | None:
        """Start due jobs; return the score (ms) of the next deferred job, if any."""
        self._looked_at = time.monotonic()
        self.queue_reads += 1
        now = timestamp_ms()
        rows = await self.pool.zrange(
            self.queue_name, "-inf", "+inf",  # type: ignore[arg-type]  # stubs omit byscore bounds
            byscore=True, offset=0, num=self.queue_read_limit, withscores=True,
        )
        self._seen_jobs = len(rows)
        self.hub.saw(self.queue_name, has_jobs=bool(rows))
        due: list[bytes] = []
        for job_id, score in rows:
            if score > now:
                break
            if job_id.decode() not in self.tasks:
                due.append(job_id)
        if due:
            await self.start_jobs(due)
        later = [score for _, score in rows if score > now]
        return later[0] if later else None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        limit = self.max_jobs - self.job_counter
        if limit <= 0 or not job_ids:
            return
        now = timestamp_ms()
        claimed = await self._claim(keys=[self.queue_name],
                                    args=[now, int(self.in_progress_timeout_s * 1000), limit, *job_ids])
        for i in range(0, len(claimed), 2):
            job_id, score = claimed[i].decode(), int(float(claimed[i + 1]))
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(functools.partial(self._job_done, job_id))
            self.tasks[job_id] = task
            self._started_ms[job_id] = now
        self._gauge_in_flight.set(self.job_counter)

    def _job_done(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._release_sem_dec_counter_on_complete()
        if self._started_ms.pop(job_id, None) is not None:
            self._finished.append(job_id)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._gauge_in_flight.set(self.job_counter)
        # A freed slot takes the next waiting job at once.
        self._wake.set()

    def _reap_finished(self) -> None:
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                if not task.cancelled() and task.exception() is not None:
                    # arq re-raises here and its loop dies (#231); the job's lock expires and
                    # the job runs again, so logging is enough.
                    exc = task.exception()
                    log.error("job_bookkeeping_failed", queue=self.queue_name, job_id=job_id,
                              error=f"{type(exc).__name__}: {exc}")

    async def record_health(self) -> None:
        """arq's health record; `queued` is what the last read saw (at most queue_read_limit)."""
        now_s = time.time()
        if now_s - self._last_health_check < self.health_check_interval:
            return
        self._last_health_check = now_s
        ongoing = sum(not t.done() for t in self.tasks.values())
        info = (f"{datetime.now():%b-%d %H:%M:%S} j_complete={self.jobs_complete} j_failed={self.jobs_failed} "
                f"j_retried={self.jobs_retried} j_ongoing={ongoing} queued={self._seen_jobs or 0}")
        await self.pool.psetex(self.health_check_key, int((self.health_check_interval + 1) * 1000), info.encode())

    async def heart_beat(self) -> None:
        await super().heart_beat()
        now = time.monotonic()
        if now - self._last_lock_refresh >= self._heartbeat_s:
            self._last_lock_refresh = self._last_running_sync = now
            await self._extend_locks()
            await self._sync_running(everything=True)
        elif now - self._last_running_sync >= _RUNNING_SYNC_S and (self._finished or self._unsynced()):
            self._last_running_sync = now
            await self._sync_running(everything=False)

    def _unsynced(self) -> bool:
        return any(ms >= self._synced_at_ms for ms in self._started_ms.values())

    async def _extend_locks(self) -> None:
        if not self._started_ms:
            return
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in self._started_ms:
                pipe.pexpire(keys.IN_PROGRESS_PREFIX + job_id, ttl_ms)
            await pipe.execute()

    async def _sync_running(self, *, everything: bool) -> None:
        """Tell other processes (stats, `jobs stuck`) which jobs run here, at most once a second."""
        running = self._started_ms if everything else {
            j: ms for j, ms in self._started_ms.items() if ms >= self._synced_at_ms}
        finished, self._finished = self._finished, []
        self._synced_at_ms = timestamp_ms()
        if running or finished:
            await stats.sync_running(self.pool, self.queue_name, dict(running), finished,
                                     ttl_s=self._heartbeat_s * 3)

    async def _wait_for_work(self, next_due_ms: float | None) -> None:
        timeout = self._fallback_s
        if self._started_ms:
            # Running jobs' locks must be extended on time, whatever the fallback poll is.
            timeout = min(timeout, self._last_lock_refresh + self._heartbeat_s - time.monotonic())
        if next_due_ms is not None:
            timeout = min(timeout, max(0.0, (next_due_ms - timestamp_ms()) / 1000))
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
        await asyncio.sleep(_REDIS_BACKOFF.delay_s(self._redis_failures))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq failed the job before running it: store a dead letter, then let arq clean up."""
        raw = await self.pool.get(keys.JOB_PREFIX + job_id)
        info: dict[str, Any] = {}
        if result_data:
            info = codec.loads(result_data)
        error = info.get("r") if isinstance(info.get("r"), dict) else {}
        assert isinstance(error, dict)
        payload, raw_text, decode_problem = _decode_raw(raw)
        job_name = info.get("f") or "<unknown>"
        res = self.runtime.res
        dl_id = await res.dlq.put(
            job_id=job_id, job_name=job_name, queue=self.queue_name, payload=payload, raw_payload=raw_text,
            attempts=int(info.get("t") or 0), error_class=str(error.get("error", "JobExecutionFailed")),
            error_message=decode_problem or str(error.get("message", "failed before it ran")),
        )
        res.metrics.job(self.queue_name, job_name).dead_lettered.inc()
        res.stats.count(self.queue_name, "dead_lettered")
        res.stats.count(self.queue_name, "failed")
        log.warning("job_dead_lettered", queue=self.queue_name, job=job_name, job_id=job_id,
                    dead_letter_id=dl_id, reason="failed_before_start", error=error.get("message"))
        await super().finish_failed_job(job_id, result_data)


def _decode_raw(raw: bytes | None) -> tuple[Any, str | None, str | None]:
    """(payload, raw text if undecodable, why it is undecodable)."""
    if raw is None:
        return None, None, None
    try:
        job = codec.loads(raw)
    except codec.NotJson as exc:
        # Escaped like a bytes literal: PostgreSQL text cannot hold NUL bytes.
        return None, repr(raw[:10_000])[2:-1], str(exc)
    args = job.get("a") or [None]
    return args[0], None, None
