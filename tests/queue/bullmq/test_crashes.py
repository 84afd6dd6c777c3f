"""The BullMQ ingress across crashes: kill -9 of the process that took a BullMQ job, right after it
handed the job over and while the job runs (and finishes) elsewhere, and Redis restarting under it.
The job runs once, and the BullMQ job ends with its outcome."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import keys
from app.runtime.embedded import RedisServer
from tests.support.bullmq_node import bullmq_node
from tests.support.services import ServiceUrls
from tests.support.worker import in_process_worker, start_worker, wait_for_runs

QUEUE = "intake-routing"
EnvFactory = Callable[..., dict[str, str]]
# Short locks: BullMQ's lock and stalled check follow JOB_LOCK_TTL_S, so a killed taker's job is
# re-delivered within a few seconds.
FAST = dict(job_lock_ttl_s=2, job_heartbeat_s=0.5, process_liveness_ttl_s=2)


def ingress_env(make_env: EnvFactory) -> dict[str, str]:
    """A process that takes the BullMQ jobs of QUEUE but does not run that queue's jobs itself."""
    return make_env(bullmq_prefix="bull", bullmq_queues=QUEUE, workhorse_queues="sla-monitor", **FAST)


def runner_env(make_env: EnvFactory, **extra: object) -> dict[str, str]:
    """A process that runs QUEUE's jobs and takes nothing from BullMQ."""
    return make_env(workhorse_queues=QUEUE, **FAST, **extra)


async def until(condition: Callable[[], object], timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():  # type: ignore[misc]  # each condition here is a coroutine function
            await asyncio.sleep(0.02)


async def test_kill_9_right_after_the_hand_over_runs_the_job_once(
        make_env: EnvFactory, res: Resources, clean: ServiceUrls) -> None:
    """Killed once the Workhorse job is enqueued and before BullMQ heard anything: BullMQ re-delivers
    the job to the next taker, which finds the Workhorse job queued and waits for it."""
    taker = await start_worker(ingress_env(make_env))
    async with bullmq_node(clean.redis_url) as node:
        await node.call("listen", queue=QUEUE)
        await node.add(QUEUE, "probe", {"tag": "handed"}, jobId="handed")
        await until(lambda: res.redis.exists(keys.JOB_PREFIX + "handed"))  # nobody runs QUEUE yet
        taker.signal(signal.SIGKILL)
        await taker.wait()
        assert (await node.state(QUEUE, "handed"))["state"] == "active"
        finished = asyncio.create_task(node.wait(QUEUE, "handed"))
        runner, again = await asyncio.gather(start_worker(runner_env(make_env)), start_worker(ingress_env(make_env)))
        try:
            assert await finished == {"resolved": {"tag": "handed", "runs": 1}}
        finally:
            await asyncio.gather(runner.stop(), again.stop())
    assert len(await wait_for_runs(res, "handed", "start", 1)) == 1
    assert again.events("bullmq_jobs_redelivered")


async def test_kill_9_during_a_long_job_neither_reruns_nor_loses_it(
        make_env: EnvFactory, res: Resources, clean: ServiceUrls) -> None:
    """Killed while the job runs in another process, which then finishes it (its result pinned
    against a count trim of one); the next taker records that outcome without running anything."""
    runner, taker = await asyncio.gather(start_worker(runner_env(make_env, keep_results_per_queue=1)),
                                         start_worker(ingress_env(make_env)))
    try:
        async with bullmq_node(clean.redis_url) as node:
            await node.call("listen", queue=QUEUE)
            await node.add(QUEUE, "probe", {"tag": "long", "sleepMs": 1500}, jobId="long")
            await wait_for_runs(res, "long", "start", 1)
            taker.signal(signal.SIGKILL)
            await taker.wait()
            await wait_for_runs(res, "long", "done", 1)
            for n in range(3):  # newer results push "long" out of the queue's newest one
                await res.enqueuer.enqueue("probe", {"tag": f"later-{n}"}, queue=QUEUE)
            await until(lambda: _trimmed(res, "long"))
            assert await res.redis.exists(keys.RESULT_PREFIX + "long")
            assert (await node.state(QUEUE, "long"))["state"] == "active"
            again = await start_worker(ingress_env(make_env))
            try:
                assert await node.wait(QUEUE, "long") == {"resolved": {"tag": "long", "runs": 1}}
            finally:
                await again.stop()
    finally:
        await runner.stop()
    assert len(await wait_for_runs(res, "long", "start", 1)) == 1


async def _trimmed(res: Resources, job_id: str) -> bool:
    return await res.redis.zscore(keys.completed_key(QUEUE), job_id) is None and bool(
        await res.redis.zcard(keys.completed_key(QUEUE)))


async def test_redis_restarting_under_the_ingress_costs_no_run_and_no_outcome(
        make_settings: Callable[..., Settings], res: Resources, tmp_path: Path) -> None:
    """Redis stops for 2 s while a BullMQ job's Workhorse job runs: taking, waiting and recording
    ride it out, the job runs once and its BullMQ job completes."""
    server = RedisServer(tmp_path / "redis", persist=True)
    await asyncio.to_thread(server.start)
    try:
        settings = make_settings(redis_url=server.url, bullmq_prefix="bull", job_lock_ttl_s=5, job_heartbeat_s=1)
        async with in_process_worker(settings) as process, bullmq_node(server.url) as node:
            await node.call("listen", queue=QUEUE)
            # The probe touches Redis when it starts and when it ends: the outage falls in between.
            await node.add(QUEUE, "probe", {"tag": "outage", "sleepMs": 4000}, jobId="outage")
            await wait_for_runs(process.res, "outage", "start", 1)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(2)  # the outage itself: nothing to await but time
            await asyncio.to_thread(server.start)
            assert await node.wait(QUEUE, "outage") == {"resolved": {"tag": "outage", "runs": 1}}
            assert len(await wait_for_runs(process.res, "outage", "start", 1)) == 1
    finally:
        await asyncio.to_thread(server.stop)
