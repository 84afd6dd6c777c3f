"""Fencing: a process that lost a job's lock to another (cut off from Redis, or stalled past the
lock) has its late outcome refused — no result, no retry, no dead letter overwrites the new
owner's — while the same finish written twice (a lost reply) still counts once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import codec, keys
from app.queue.finishing import Finish, FinishBatcher
from app.queue.replies import octets
from app.runtime.process import Process
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
USURPER = "elsewhere:1:abcdef"


async def _take_over(res: Resources, job_id: str) -> None:
    """What a claim by another, live process leaves in Redis: its lock and its liveness key."""
    await res.redis.set(keys.alive_key(USURPER), "1", px=60_000)
    await res.redis.set(keys.IN_PROGRESS_PREFIX + job_id, USURPER, px=60_000)


def _fenced(process: Process) -> float:
    return process.res.metrics.registry.get_sample_value("workhorse_jobs_fenced_total", {"queue": QUEUE}) or 0.0


async def test_a_stalled_owners_late_finish_is_refused(make_settings: Callable[..., Settings],
                                                       res: Resources) -> None:
    """The job's lock passes to another process while it runs: when it completes here, nothing is
    written — the job stays queued under the new owner's lock, with no result — and it is counted."""
    async with in_process_worker(make_settings(), [QUEUE]) as process:
        await res.enqueuer.enqueue("probe", {"tag": "stalled", "sleepMs": 600}, queue=QUEUE, job_id="stalled")
        await wait_for_runs(res, "stalled", "start", 1)
        await _take_over(res, "stalled")
        await wait_for_runs(res, "stalled", "done", 1)
        async with asyncio.timeout(10):
            while not _fenced(process):
                await asyncio.sleep(0.02)
    assert await res.redis.get(keys.RESULT_PREFIX + "stalled") is None
    assert await res.redis.zscore(QUEUE, "stalled") is not None
    assert await res.redis.get(keys.IN_PROGRESS_PREFIX + "stalled") == USURPER.encode()


async def test_a_late_dead_letter_is_not_written(make_settings: Callable[..., Settings], res: Resources) -> None:
    """A job failing for good after its lock passed to another process stores no dead letter and
    runs no failure hook: the new owner decides the job's fate."""
    async with in_process_worker(make_settings(), [QUEUE]) as process:
        await res.enqueuer.enqueue("probe", {"tag": "doomed", "sleepMs": 600, "failTimes": 9, "error": "permanent"},
                                   queue=QUEUE, job_id="doomed")
        await wait_for_runs(res, "doomed", "start", 1)
        await _take_over(res, "doomed")
        await wait_for_runs(res, "doomed", "fail", 1)
        async with asyncio.timeout(10):
            while not _fenced(process):
                await asyncio.sleep(0.02)
    assert await res.dlq.list() == []
    assert await res.redis.get(keys.RESULT_PREFIX + "doomed") is None


async def test_the_same_finish_written_twice_counts_once(res: Resources) -> None:
    """A finish whose reply was lost is written again: both writes report it applied, and the
    stored outcome is the one finish (the lock, released by the first, is not needed again)."""
    await res.redis.zadd(QUEUE, {"twice": 1})
    await res.redis.set(keys.IN_PROGRESS_PREFIX + "twice", "me:1:aaaaaa", px=60_000)
    finisher = FinishBatcher(res.redis, QUEUE, "me:1:aaaaaa")
    finish = Finish("twice", codec.dumps({"s": True, "r": "ok"}), 60_000, done=True)
    assert await finisher.write(finish) is True
    assert await finisher.write(finish) is True
    other = Finish("twice", codec.dumps({"s": True, "r": "another"}), 60_000, done=True)
    assert await finisher.write(other) is False
    assert codec.loads(octets(await res.redis.get(keys.RESULT_PREFIX + "twice") or b"")) == {"s": True, "r": "ok"}
