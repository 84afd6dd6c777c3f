"""`workhorse queues`, pause/resume/drain and `jobs stuck` as an operator uses them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control, keys, stats
from app.queue.clock import now_ms
from tests.support.worker import cli, in_process_worker, wait_for_runs

QUEUE = "intake-routing"


async def test_queues_shows_counts_and_pause_holds_across_processes(
        make_env: Callable[..., dict[str, str]], settings: Settings, res: Resources) -> None:
    """`queues pause` stops every process taking jobs (they wait); `resume` lets them run; the
    table and JSON show waiting, delayed, completed and paused."""
    env = make_env()
    code, out = await cli(env, "queues", "pause", QUEUE)
    assert code == 0 and "paused" in out
    async with in_process_worker(settings, [QUEUE]):
        for n in range(3):
            await res.enqueuer.enqueue("probe", {"tag": f"held{n}"}, queue=QUEUE)
        await res.enqueuer.enqueue("probe", {"tag": "later"}, queue=QUEUE, defer_s=600)
        code, out = await cli(env, "queues", "--json")
        row = json.loads(out)[QUEUE]
        assert code == 0 and row["paused"] is True and row["waiting"] == 3 and row["delayed"] == 1
        assert await res.redis.llen("test:runs") == 0
        code, out = await cli(env, "queues", "resume", QUEUE)
        assert code == 0
        for n in range(3):
            await wait_for_runs(res, f"held{n}", "done", 1)
        await res.stats.flush(res.redis)
        async with asyncio.timeout(10):
            while (await stats.read(res.redis, [QUEUE]))[QUEUE].completed < 3:
                await asyncio.sleep(0.1)
    code, out = await cli(env, "queues")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["QUEUE", "WAITING", "ACTIVE", "DELAYED"]
    line = next(row for row in out.splitlines() if row.startswith(QUEUE))
    assert line.split()[1:5] == ["0", "0", "1", "3"]


async def test_drain_waits_for_work_to_finish_and_fails_on_timeout(
        make_env: Callable[..., dict[str, str]], settings: Settings, res: Resources) -> None:
    """`queues drain` returns 0 once the queue is empty while workers keep working, and exits 1
    when it cannot drain in time."""
    env = make_env()
    await control.pause(res.redis, QUEUE)
    await res.enqueuer.enqueue("probe", {"tag": "stay"}, queue=QUEUE)
    code, out = await cli(env, "queues", "drain", QUEUE, "--timeout", "0.5")
    assert code == 1 and "did not drain" in out and "waiting=1" in out
    await control.resume(res.redis, QUEUE)
    async with in_process_worker(settings, [QUEUE]):
        for n in range(5):
            await res.enqueuer.enqueue("probe", {"tag": f"d{n}", "sleepMs": 200}, queue=QUEUE)
        code, out = await cli(env, "queues", "drain", QUEUE, "--timeout", "30")
        assert code == 0 and "drained" in out
        for n in range(5):
            assert await wait_for_runs(res, f"d{n}", "done", 1, timeout_s=1)


async def test_jobs_stuck_lists_jobs_past_their_timeout(make_env: Callable[..., dict[str, str]],
                                                        res: Resources) -> None:
    """A job a live process reports running for longer than its queue's timeout is listed."""
    await stats.sync_running(res.redis, QUEUE, {"old-job": 1_000}, [], ttl_s=60)
    await stats.sync_running(res.redis, QUEUE, {"new-job": now_ms()}, [], ttl_s=60)
    code, out = await cli(make_env(), "jobs", "stuck", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["jobId"] for r in rows] == ["old-job"]
    assert rows[0]["queue"] == QUEUE and rows[0]["timeoutS"] == 120
    assert await res.redis.exists(keys.running_key(QUEUE))
