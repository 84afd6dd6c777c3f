"""The BullMQ ingress of one process: per mapped queue, a loop that takes BullMQ jobs and a task per
job in hand that hands it over, waits for its outcome and records it in BullMQ (the package
docstring says what this guarantees across crashes, and why).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from redis import exceptions as redis_errors

from app.backoff import REDIS_OUTAGE_BACKOFF
from app.config import Settings
from app.errors import SettingsError
from app.queue.bullmq import handover
from app.queue.bullmq.fetcher import Fetcher, LostJob, Taken
from app.queue.bullmq.handover import HandOver
from app.queue.bullmq.outcomes import Gone, OnProgress, OutcomeWatcher, cancelled
from app.queue.handles import JobOutcome
from app.queue.resources import EngineResources

log = structlog.get_logger(__name__)

MAX_IN_HAND = 1000
"""BullMQ jobs one queue's ingress holds at once, each waiting for its Workhorse job: a bound on
memory, not on throughput (the Workhorse queue's concurrency decides how many run). Past it, jobs
wait in BullMQ's own wait list."""
TAKERS = 8
"""Jobs one queue's ingress takes from BullMQ at once in a burst: one taker waits on the queue
(BullMQ's marker), and once it finds a job ready right after another, up to TAKERS - 1 more take
what is ready, so a burst is not handed over one round trip after another. A lone job starts no
helper: their looks would only delay its hand-over."""
MIN_RESULT_KEPT_S = 60


def mapped_queues(settings: Settings) -> list[str]:
    """BULLMQ_QUEUES, else every queue; SettingsError for what the ingress cannot work with."""
    table = list(settings.queues.queues)
    names = settings.bullmq.queues or table
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SettingsError(f"invalid setting BULLMQ_QUEUES: unknown queue(s) {', '.join(unknown)}; "
                            f"known: {', '.join(table)}")
    # A BullMQ job re-delivered after a crash (two lock periods later) reads its job's result.
    least_s = max(MIN_RESULT_KEPT_S, 3 * settings.job.lock_ttl_s)
    for name, kept_s in (("KEEP_RESULT_S", settings.keep.result_s), ("KEEP_FAILED_S", settings.keep.failed_s)):
        if kept_s < least_s:
            raise SettingsError(f"invalid setting {name}: the BullMQ ingress (BULLMQ_PREFIX) reads each "
                                f"job's result, so keep it at least {least_s:g} s")
    return names


class BullmqIngress:
    """Every mapped queue's ingress in this process, started and stopped by the Engine."""

    def __init__(self, res: EngineResources) -> None:
        settings = res.settings
        assert settings.bullmq.prefix, "the Engine starts the ingress only with BULLMQ_PREFIX"
        self.watcher = OutcomeWatcher(res.redis)
        self.prefix = settings.bullmq.prefix
        lock_ms = int(settings.job.lock_ttl_s * 1000)
        self.queues = [QueueIngress(res, Fetcher(q, prefix=settings.bullmq.prefix, url=res.redis_url, lock_ms=lock_ms),
                                    self.watcher) for q in mapped_queues(settings)]

    async def start(self) -> None:
        self.watcher.start()
        for q in self.queues:
            await q.start()
        log.info("bullmq_ingress_started", prefix=self.prefix, queues=[q.queue for q in self.queues])

    def finished_here(self, job_id: str) -> None:
        self.watcher.finished_here(job_id)

    async def stop_taking(self) -> None:
        await asyncio.gather(*(q.stop_taking() for q in self.queues))

    async def stop(self, grace_s: float) -> None:
        """Record the outcomes known within `grace_s`; the jobs still in hand are left to BullMQ,
        which re-delivers them to a live process once their locks lapse."""
        left = sum(await asyncio.gather(*(q.stop(grace_s) for q in self.queues)))
        await self.watcher.stop()
        log.info("bullmq_ingress_stopped", left_to_redelivery=left)


class QueueIngress:
    def __init__(self, res: EngineResources, fetcher: Fetcher, watcher: OutcomeWatcher) -> None:
        self.res, self.fetcher, self.watcher = res, fetcher, watcher
        self.queue = fetcher.queue
        self._slots = asyncio.Semaphore(MAX_IN_HAND)
        self._in_hand: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._progress: set[asyncio.Task[None]] = set()
        self._taken = 0
        self._retry_options_noted = False

    async def start(self) -> None:
        await self.fetcher.prepare()
        self._loops = [asyncio.create_task(self._take_forever(), name=f"bullmq-take:{self.queue}"),
                       asyncio.create_task(self._check_stalled_forever(), name=f"bullmq-stalled:{self.queue}")]

    async def stop_taking(self) -> None:
        self._stopping.set()  # a loop whose cancellation is lost ends at its next turn
        await cancelled([*self._loops, *self._helpers])

    async def stop(self, grace_s: float) -> int:
        """Wait up to `grace_s` for the jobs in hand; return how many were still in hand."""
        if self._in_hand:
            await asyncio.wait(self._in_hand, timeout=grace_s)
        left = len(self._in_hand)
        await cancelled([*self._in_hand, *self._progress])
        await self.fetcher.close()
        return left

    async def _take_forever(self) -> None:
        failures, taken = 0, False
        while not self._stopping.is_set():
            try:
                after_one, taken = taken, await self._take(self.fetcher.take)
            except Exception as exc:  # Redis away (or the library failing): look again after a pause
                failures, taken = failures + 1, False
                delay = REDIS_OUTAGE_BACKOFF.delay_s(failures)
                if failures == 1:
                    log.warning("bullmq_take_failed", queue=self.queue, error=f"{type(exc).__name__}: {exc}",
                                retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("bullmq_take_recovered", queue=self.queue, failures=failures)
                failures = 0
            while taken and after_one and len(self._helpers) < TAKERS - 1:
                helper = asyncio.create_task(self._take_while_ready())
                self._helpers.add(helper)
                helper.add_done_callback(self._helpers.discard)

    async def _take_while_ready(self) -> None:
        """An extra taker in a burst: takes jobs until BullMQ has none ready (or fails: the main
        taker carries on)."""
        with contextlib.suppress(Exception):
            while not self._stopping.is_set() and await self._take(self.fetcher.take_ready):
                pass

    async def _take(self, take: Callable[[str], Awaitable[Taken | None]]) -> bool:
        """One job taken with `take` and handed over in a task of its own; False when none was."""
        await self._slots.acquire()
        self._taken += 1
        try:
            taken = await take(f"{self.fetcher.worker.id}:{self._taken}")
        except BaseException:
            self._slots.release()
            raise
        if taken is None:
            self._slots.release()
            return False
        self.fetcher.hold(taken)
        task = asyncio.create_task(self._hand_over(taken))
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)
        return True

    async def _check_stalled_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                moved = await self.fetcher.check_stalled()
            except Exception as exc:  # the next interval tries again
                log.warning("bullmq_stalled_check_failed", queue=self.queue, error=f"{type(exc).__name__}: {exc}")
            else:
                if moved:
                    log.info("bullmq_jobs_redelivered", queue=self.queue, jobs=len(moved), ids=moved[:20])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.fetcher.lock_ms / 1000):
                    await self._stopping.wait()

    async def _hand_over(self, taken: Taken) -> None:
        """Validate, enqueue (or find the job already there), wait, record; a failure before the
        outcome is recorded leaves the BullMQ job to be re-delivered, which repeats all of it safely."""
        job = taken.job
        try:
            try:
                plan = handover.plan(self.res.registry, job)
            except Exception as exc:  # a job that can never run (or a payload model's bug): refused
                await self._refuse(taken, exc)
                return
            self._note_retry_options(job.opts)
            await _through_outages(lambda: self._enqueue(plan), "bullmq_enqueue_held", plan.job_id)
            outcome = await self.watcher.wait(plan.job_id, plan.queue, self._mirror_progress(taken))
            await _through_outages(lambda: self._record(taken, plan, outcome), "bullmq_outcome_held", plan.job_id)
            self.watcher.unpin(plan.job_id)
        except LostJob as exc:  # re-delivered meanwhile: its new taker records the outcome
            log.info("bullmq_job_taken_again", queue=self.queue, bullmq_id=job.id, detail=str(exc))
        except Exception as exc:
            log.error("bullmq_hand_over_failed", queue=self.queue, bullmq_id=job.id, exc_info=exc)
        finally:
            self.fetcher.let_go(taken)
            self._slots.release()

    async def _enqueue(self, plan: HandOver) -> None:
        # The request pins its result in the enqueue's own script (app/queue/bullmq/outcomes.py):
        # a pin written apart, even just before, costs the pickup a round trip.
        self.watcher.expect(plan.job_id, plan.queue)
        [enqueued] = await self.res.enqueuer.enqueue_many([plan.request])
        if enqueued is None:
            log.debug("bullmq_job_attached", queue=self.queue, job_id=plan.job_id)

    async def _record(self, taken: Taken, plan: HandOver, outcome: JobOutcome | Gone) -> None:
        if isinstance(outcome, Gone):
            await self.fetcher.fail(taken, f"Workhorse job {plan.job_id} is gone without an outcome: neither "
                                           "queued, running nor holding a result (expired, or lost by Redis)")
        elif outcome.job not in ("<unknown>", "<aborted>", plan.name) or outcome.queue not in ("<unknown>", plan.queue):
            await self.fetcher.fail(taken, f"job id {plan.job_id} belongs to another job ({outcome.job} on "
                                           f"{outcome.queue}); give this one another jobId")
        elif outcome.success:
            await self.fetcher.complete(taken, outcome.result)
        else:
            await self.fetcher.fail(taken, handover.failure_text(outcome.result))

    async def _refuse(self, taken: Taken, exc: Exception) -> None:
        """One dead letter (under the job's Workhorse id, so a re-delivery updates the same row) and
        the BullMQ job failed with the reason, which names the field."""
        job, job_id = taken.job, handover.workhorse_job_id(taken.job)
        log.warning("bullmq_job_refused", queue=self.queue, bullmq_id=job.id, job=job.name[:200], error=str(exc)[:2000])
        await self.res.dlq.put(job_id=job_id, job_name=job.name, queue=self.queue, payload=job.payload, attempts=1,
                               error_class=type(exc).__name__, error_message=f"BullMQ job {job.id}: {exc}")
        await _through_outages(lambda: self.fetcher.fail(taken, str(exc)), "bullmq_outcome_held", job_id)

    def _note_retry_options(self, opts: Mapping[str, Any]) -> None:
        if self._retry_options_noted:
            return
        carried = handover.retry_options(opts)
        if carried:
            self._retry_options_noted = True
            policy = self.res.settings.queues.queue(self.queue).retry
            log.info("bullmq_retry_options_superseded", queue=self.queue, bullmq=carried, attempts=policy.attempts,
                     base_delay_s=policy.base_delay_s, max_delay_s=policy.max_delay_s)

    def _mirror_progress(self, taken: Taken) -> OnProgress:
        def mirror(percent: Any) -> None:
            task = asyncio.create_task(self._report_progress(taken, percent))
            self._progress.add(task)
            task.add_done_callback(self._progress.discard)
        return mirror

    async def _report_progress(self, taken: Taken, percent: Any) -> None:
        with contextlib.suppress(Exception):  # progress is for people watching; it never fails a job
            await self.fetcher.progress(taken, percent)


async def _through_outages(step: Callable[[], Awaitable[None]], event: str, job_id: str) -> None:
    """Run `step()` until Redis answers it (every step of a hand-over can be repeated). Only the
    connection failing is waited out: an error reply would come again (the hand-over gives up,
    and the job's re-delivery tries once more)."""
    failures = 0
    while True:
        try:
            await step()
            return
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            failures += 1
            delay = REDIS_OUTAGE_BACKOFF.delay_s(failures)
            if failures == 1:
                log.warning(event, job_id=job_id, error=str(exc), retry_in_s=round(delay, 3))
            await asyncio.sleep(delay)
