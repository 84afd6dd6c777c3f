"""Handing a due job straight to an idle worker (app/queue/handoff.py): the enqueue claims the
job for the worker and publishes it on the worker's channel; nothing is lost or run twice when a
message is lost, the worker is full, the process is dead, the queue is paused or the message is
garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio.client import PubSub

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue import codec, control, keys
from app.queue.connections import connect_redis
from app.queue.enqueue import Enqueuer, JobRequest
from app.runtime.embedded import RedisServer
from app.runtime.process import Process
from tests.support.jobs import recorded_runs, result_of
from tests.support.waits import until, until_true
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
IDLE = keys.idle_workers_key(QUEUE)


async def registered(res: Resources, worker: Process) -> None:
    """Until the worker process has entered the queue's idle set."""
    await until(lambda: res.redis.zscore(IDLE, worker.engine.instance))


@asynccontextmanager
async def listening(res: Resources, worker: Process) -> AsyncIterator[PubSub]:
    pubsub = res.redis.pubsub()
    await pubsub.subscribe(keys.wake_channel(QUEUE), keys.handoff_channel(worker.engine.instance))
    try:
        yield pubsub
    finally:
        await pubsub.aclose()


async def heard(pubsub: PubSub, quiet_s: float = 0.3) -> list[str]:
    """The channels of the messages received until none came for `quiet_s`."""
    return [channel for channel, _ in await messages(pubsub, quiet_s)]


async def messages(pubsub: PubSub, quiet_s: float = 0.3) -> list[tuple[str, bytes]]:
    """(channel, data) of the messages received until none came for `quiet_s`."""
    received = []
    loop = asyncio.get_running_loop()
    last = loop.time()
    while loop.time() - last < quiet_s:
        message = await pubsub.get_message(timeout=0.05)
        if message is not None and message["type"] == "message":
            received.append((message["channel"].decode(), message["data"]))
            last = loop.time()
    return received


async def test_a_due_job_for_an_idle_worker_is_handed_to_it_without_a_wake_up(settings: Settings,
                                                                               res: Resources) -> None:
    async with in_process_worker(settings, [QUEUE]) as worker, listening(res, worker) as pubsub:
        await registered(res, worker)
        await result_of(res, await res.enqueuer.enqueue("probe", {"tag": "once"}, queue=QUEUE), QUEUE)
        [(channel, handed)] = await messages(pubsub)
        assert channel == keys.handoff_channel(worker.engine.instance)
        # The same message again, late (after another job, so the first is long reaped): the job
        # finished moments ago, so it is not run twice.
        await result_of(res, await res.enqueuer.enqueue("ping", {}, queue=QUEUE), QUEUE)
        await registered(res, worker)
        await res.redis.publish(channel, handed)
        await heard(pubsub)
        assert [run["attempt"] for run in await wait_for_runs(res, "once", "start", 1)] == [1]
        # Several at once: the first is handed off, the others wake the worker; each runs once.
        await registered(res, worker)
        batch = await res.enqueuer.enqueue_many([JobRequest("ping", queue=QUEUE) for _ in range(5)])
        pongs = [await res.enqueuer.job(e.job_id, QUEUE).result(timeout_s=10) for e in batch if e is not None]
        assert [p["attempt"] for p in pongs] == [1] * 5
        assert await heard(pubsub) == [keys.handoff_channel(worker.engine.instance), keys.wake_channel(QUEUE)]
    assert await res.redis.zcard(QUEUE) == 0
    assert not await res.redis.keys(keys.IN_PROGRESS_PREFIX + "*")
    assert await res.redis.zscore(IDLE, worker.engine.instance) is None, "a stopped worker stays in the idle set"


async def test_two_workers_taking_handoffs_and_looking_at_once_run_every_job_once(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Enqueues one by one from many tasks while two small workers are busy: handoffs, looks and
    give-backs interleave; every job runs exactly once, as attempt 1."""
    tags = [f"race-{n}" for n in range(300)]
    async with in_process_worker(make_settings(intake_routing_concurrency=3), [QUEUE]), \
            in_process_worker(make_settings(intake_routing_concurrency=3), [QUEUE]):
        async def enqueue(chunk: list[str]) -> None:
            # Alone and in small batches: each enqueue hands its first job off, wakes for the rest.
            for start in range(0, len(chunk), 3):
                await res.enqueuer.enqueue_many([JobRequest("probe", {"tag": tag}, queue=QUEUE)
                                                 for tag in chunk[start:start + 3]])
        await asyncio.gather(*(enqueue(tags[n::10]) for n in range(10)))
        async with asyncio.timeout(60):
            while len(runs := await recorded_runs(res)) < 2 * len(tags) or await res.redis.zcard(QUEUE):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a second run of any job would show up meanwhile
        runs = await recorded_runs(res)
    starts = [r for r in runs if r["event"] == "start"]
    assert sorted(r["tag"] for r in starts) == sorted(tags)
    assert {r["attempt"] for r in starts} == {1}


async def test_a_dead_process_in_the_idle_set_is_skipped_and_dropped(settings: Settings, res: Resources) -> None:
    async with in_process_worker(settings, [QUEUE]) as worker:
        await registered(res, worker)
        await res.redis.zadd(IDLE, {"gone-host:1:dead00": 1})  # popped first: the lowest score
        pong = await result_of(res, await res.enqueuer.enqueue("ping", {}, queue=QUEUE), QUEUE)
        assert pong["attempt"] == 1
        assert await res.redis.zscore(IDLE, "gone-host:1:dead00") is None


async def test_a_lost_handoff_is_taken_by_the_next_look_without_counting_the_attempt_twice(
        settings: Settings, res: Resources) -> None:
    """The enqueue claimed the job for us but its message never arrived: our next look runs it,
    as attempt 1."""
    async with in_process_worker(settings, [QUEUE]) as worker:
        await registered(res, worker)
        record = codec.dumps({"t": None, "f": "ping", "a": [{}], "k": {}, "et": 1})
        await res.redis.psetex(keys.JOB_PREFIX + "lost", 600_000, record)
        await res.redis.zadd(QUEUE, {"lost": 1})
        await res.redis.set(keys.IN_PROGRESS_PREFIX + "lost", worker.engine.instance, px=30_000)
        await res.redis.incr(keys.RETRY_PREFIX + "lost")
        await res.redis.publish(keys.wake_channel(QUEUE), "1")
        pong = await res.enqueuer.job("lost", QUEUE).result(timeout_s=10)
    assert pong["attempt"] == 1


async def test_a_full_worker_gives_a_handoff_back_and_runs_it_later_as_the_same_attempt(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    settings = make_settings(intake_routing_concurrency=1)
    async with in_process_worker(settings, [QUEUE]) as worker:
        await registered(res, worker)
        await res.enqueuer.enqueue("probe", {"tag": "long", "sleepMs": 2000}, queue=QUEUE)
        await wait_for_runs(res, "long", "start", 1)
        await until(lambda: _absent(res, worker))  # full: out of the idle set
        await res.redis.zadd(IDLE, {worker.engine.instance: 30_000})  # as if registered before it filled up
        handed = await res.enqueuer.enqueue("probe", {"tag": "next"}, queue=QUEUE)
        assert handed is not None
        # Given back while "long" still runs: unlocked for any process, its attempt refunded.
        await until(lambda: _given_back(res, handed.job_id), timeout_s=1.5)
        [done] = await wait_for_runs(res, "next", "done", 1)
        [long_done] = await wait_for_runs(res, "long", "done", 1)
    assert done["attempt"] == 1 and done["t"] >= long_done["t"]
    assert len(await wait_for_runs(res, "next", "start", 1)) == 1


async def _given_back(res: Resources, job_id: str) -> bool:
    locked = await res.redis.exists(keys.IN_PROGRESS_PREFIX + job_id)
    return not locked and await res.redis.get(keys.RETRY_PREFIX + job_id) == b"0"


async def _absent(res: Resources, worker: Process) -> bool:
    return await res.redis.zscore(IDLE, worker.engine.instance) is None


async def test_a_stopping_process_leaves_the_idle_set_before_its_jobs_finish(settings: Settings,
                                                                             res: Resources) -> None:
    """While a drain waits for in-flight jobs, no enqueue hands a job to the stopping process."""
    async with in_process_worker(settings, [QUEUE]) as worker:
        await registered(res, worker)
        await res.enqueuer.enqueue("probe", {"tag": "drain", "sleepMs": 1500}, queue=QUEUE)
        await wait_for_runs(res, "drain", "start", 1)
        await res.redis.zadd(IDLE, {worker.engine.instance: 30_000})  # a slot is free: registered
        worker.request_stop()
        await until(lambda: _absent(res, worker), timeout_s=1.0)
        assert [r for r in await recorded_runs(res) if r["event"] == "done"] == [], "left only after the drain"
    assert [r["tag"] for r in await recorded_runs(res) if r["event"] == "done"] == ["drain"]


async def test_a_paused_queue_gets_no_handoff_and_garbage_on_the_channel_changes_nothing(
        settings: Settings, res: Resources) -> None:
    async with in_process_worker(settings, [QUEUE]) as worker, listening(res, worker) as pubsub:
        await registered(res, worker)
        await res.redis.publish(keys.handoff_channel(worker.engine.instance), b"\x00garbage")
        await res.redis.publish(keys.handoff_channel(worker.engine.instance), b"intake-routing 1 1 999\nshort")
        await control.pause(res.redis, QUEUE)
        enqueued = await res.enqueuer.enqueue("ping", {}, queue=QUEUE)
        assert enqueued is not None
        await asyncio.sleep(0.2)
        assert await res.enqueuer.job(enqueued.job_id, QUEUE).status() == "queued"
        assert await heard(pubsub) == [keys.handoff_channel(worker.engine.instance)] * 2 + [keys.wake_channel(QUEUE)]
        await control.resume(res.redis, QUEUE)
        pong = await res.enqueuer.job(enqueued.job_id, QUEUE).result(timeout_s=10)
    assert pong["attempt"] == 1


async def test_after_redis_restarts_the_worker_listens_again_and_jobs_are_handed_to_it(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Redis goes away for a moment under an idle worker (and comes back empty): its hub
    notices, reconnects once Redis is back, and the worker enters the idle set again; once its
    liveness key is written again, the next job is handed over (no wake-up)."""
    server = RedisServer(tmp_path / "redis", persist=False)
    await asyncio.to_thread(server.start)
    settings = make_settings(redis_url=server.url)
    try:
        async with in_process_worker(settings, [QUEUE]) as worker:
            client = connect_redis(server.url)
            await until(lambda: client.zscore(IDLE, worker.engine.instance))
            await client.aclose(close_connection_pool=True)
            await asyncio.to_thread(server.stop)
            await until_true(lambda: not worker.engine.hub.connected.is_set())
            await asyncio.to_thread(server.start)
            async with asyncio.timeout(20):
                await worker.engine.hub.connected.wait()
            client = connect_redis(server.url)
            await until(lambda: client.zscore(IDLE, worker.engine.instance), timeout_s=20)
            # Until then the process is not known to be alive: a job would go by wake-up.
            await until(lambda: client.exists(keys.alive_key(worker.engine.instance)), timeout_s=20)
            pubsub = client.pubsub()
            await pubsub.subscribe(keys.wake_channel(QUEUE), keys.handoff_channel(worker.engine.instance))
            enqueued = await Enqueuer(client, build_registry(settings)).enqueue("ping", {}, queue=QUEUE)
            assert enqueued is not None
            assert await heard(pubsub) == [keys.handoff_channel(worker.engine.instance)]
            assert await Enqueuer(client, build_registry(settings)).job(enqueued.job_id, QUEUE).result(timeout_s=10)
            await pubsub.aclose()
            await client.aclose(close_connection_pool=True)
    finally:
        await asyncio.to_thread(server.stop)


