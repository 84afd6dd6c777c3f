"""A finish written twice (its reply lost to a connection drop, then retried) changes nothing
the second time, never releases another process's lock, and a zero result TTL stores nothing."""

from __future__ import annotations

from app.jobs.resources import Resources
from app.queue import keys
from app.queue.finishing import Finish, FinishBatcher

QUEUE = "intake-routing"
ME = "test-host:1:f1f1f1"
"""The worker process writing the finishes (its locks name it)."""


async def test_a_retry_finish_applied_twice_defers_the_job_once(res: Resources) -> None:
    """The retry's score is absolute: writing the same finish twice leaves it where it was."""
    await res.redis.zadd(QUEUE, {"j1": 1000})
    await res.redis.set(keys.IN_PROGRESS_PREFIX + "j1", ME)
    batcher = FinishBatcher(res.redis, QUEUE, ME)
    finish = Finish("j1", None, None, done=False, next_score_ms=11_000)
    await batcher.write(finish)
    await batcher.write(finish)
    assert await res.redis.zscore(QUEUE, "j1") == 11_000
    assert not await res.redis.exists(keys.IN_PROGRESS_PREFIX + "j1")


async def test_a_late_finish_never_releases_a_lock_another_process_holds(res: Resources) -> None:
    """After an outage another process may have taken the job over: our late finish leaves its lock."""
    await res.redis.zadd(QUEUE, {"j2": 1000})
    await res.redis.set(keys.IN_PROGRESS_PREFIX + "j2", "other-host:1:abc")
    await FinishBatcher(res.redis, QUEUE, ME).write(Finish("j2", None, None, done=False, next_score_ms=5000))
    assert await res.redis.get(keys.IN_PROGRESS_PREFIX + "j2") == b"other-host:1:abc"


async def test_a_zero_result_ttl_stores_no_result_and_fails_nothing(res: Resources) -> None:
    """KEEP_RESULT_S=0: the job finishes, no result is kept (Redis refuses SET PX 0 outright)."""
    await res.redis.zadd(QUEUE, {"j3": 1000})
    await res.redis.set(keys.IN_PROGRESS_PREFIX + "j3", ME)
    await FinishBatcher(res.redis, QUEUE, ME).write(Finish("j3", b'{"s":true}', 0, done=True))
    assert await res.redis.zcard(QUEUE) == 0
    assert not await res.redis.exists(keys.RESULT_PREFIX + "j3", keys.IN_PROGRESS_PREFIX + "j3")
