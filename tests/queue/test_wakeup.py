"""Workers wake on enqueue instead of polling: new jobs, deferred jobs, lost wake-ups, freed slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import keys
from tests.support.records import write_job
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
LONG_FALLBACK_MS = 5000
# Far below LONG_FALLBACK_MS, far above a wake-up's few milliseconds on a busy machine.
PROMPT_S = 1.0


async def test_job_enqueued_while_the_worker_waits_starts_long_before_the_fallback_poll(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """With a 5 s fallback poll, each of three jobs enqueued into a waiting worker starts within
    1 s of its enqueue: the enqueue's wake-up message, not the poll, started it."""
    settings = make_settings(poll_fallback_ms=LONG_FALLBACK_MS)
    async with in_process_worker(settings, [QUEUE]):
        for n in range(3):
            enqueued_at = time.time()
            await res.enqueuer.enqueue("probe", {"tag": f"w{n}"}, queue=QUEUE)
            [start] = await wait_for_runs(res, f"w{n}", "start", 1, timeout_s=LONG_FALLBACK_MS / 1000 + 5)
            assert start["t"] - enqueued_at < PROMPT_S
            await wait_for_runs(res, f"w{n}", "done", 1)


async def test_deferred_jobs_start_on_time_neither_early_nor_lost(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Deferred jobs start at their time, not before it and not at the next fallback poll, and
    each runs exactly once; a job deferred less than one already waiting moves the wake-up
    forward."""
    settings = make_settings(poll_fallback_ms=LONG_FALLBACK_MS)
    async with in_process_worker(settings, [QUEUE]):
        later = await res.enqueuer.enqueue("probe", {"tag": "later"}, queue=QUEUE, defer_s=1.5)
        sooner = await res.enqueuer.enqueue("probe", {"tag": "sooner"}, queue=QUEUE, defer_s=0.6)
        assert later is not None and sooner is not None
        for tag, job in (("sooner", sooner), ("later", later)):
            [start] = await wait_for_runs(res, tag, "start", 1, timeout_s=10)
            started_ms = start["t"] * 1000
            # Scores are whole milliseconds and arq rounds its clock to them: 1 ms of slack.
            assert started_ms >= job.run_at_ms - 1
            assert started_ms - job.run_at_ms < 250
        await wait_for_runs(res, "later", "done", 1)
        for tag in ("sooner", "later"):
            assert len(await wait_for_runs(res, tag, "start", 1)) == 1


async def test_job_whose_wake_up_was_never_published_runs_via_the_fallback_poll(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A job written without a wake-up message (as a stock arq client writes it), with keyspace
    notifications off, still runs within about one fallback period of the idle worker."""
    fallback_s = 0.5
    settings = make_settings(poll_fallback_ms=int(fallback_s * 1000), redis_keyspace_notifications="off")
    listener = Redis.from_url(res.redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(keys.wake_channel(QUEUE))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    try:
        async with in_process_worker(settings, [QUEUE]):
            enqueued_at = time.time()
            await write_job(res.redis, QUEUE, "probe", {"tag": "silent"}, job_id="silent")
            [start] = await wait_for_runs(res, "silent", "start", 1, timeout_s=10)
            # A sweep finds it within one period; the slack is for a busy machine.
            assert start["t"] - enqueued_at < 3 * fallback_s
            await wait_for_runs(res, "silent", "done", 1)
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1) is None
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_freed_slot_takes_the_next_waiting_job_at_once(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """With one slot and a 5 s fallback, a job whose wake-up came while the slot was busy starts
    as soon as the running job finishes."""
    # A long heartbeat too: running jobs' lock refreshes must not be what starts the job.
    settings = make_settings(poll_fallback_ms=LONG_FALLBACK_MS, intake_routing_concurrency=1,
                             job_lock_ttl_s=30, job_heartbeat_s=10)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "first", "sleepMs": 300}, queue=QUEUE)
        await wait_for_runs(res, "first", "start", 1, timeout_s=10)
        await res.enqueuer.enqueue("probe", {"tag": "second"}, queue=QUEUE)
        [first_done] = await wait_for_runs(res, "first", "done", 1, timeout_s=10)
        [second_start] = await wait_for_runs(res, "second", "start", 1, timeout_s=10)
        assert 0 <= second_start["t"] - first_done["t"] < PROMPT_S


async def test_idle_process_sweeps_once_for_all_queues(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """An idle process checks its empty queues with one sweep per fallback period instead of
    one read per queue, and still starts a job that nobody announced on any of them."""
    settings = make_settings(poll_fallback_ms=200, redis_keyspace_notifications="off")
    async with in_process_worker(settings) as process:
        reads_before = {w.queue_name: w.polls for w in process.engine.workers}
        t0 = time.monotonic()
        async with asyncio.timeout(5):
            while not process.engine.hub.swept_since(t0 + 1.0):  # five fallback periods and more
                await asyncio.sleep(0.05)
        for w in process.engine.workers:
            assert w.polls - reads_before[w.queue_name] <= 1, w.queue_name
        await write_job(res.redis, "sla-monitor", "probe", {"tag": "quiet"}, job_id="quiet")
        await wait_for_runs(res, "quiet", "done", 1, timeout_s=5)
