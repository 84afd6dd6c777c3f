# mypy: ignore-errors
"""Taskiq with taskiq-redis's RedisStreamBroker (a stream and a consumer group, results in Redis
keys) as a peer: worker, throughput, latency.

The worker is taskiq's own (`taskiq worker`): one worker process, at most 20 jobs at a time (as
Workhorse and the other asyncio peers run). Its consumer group is created by the driver before
the backlog goes in: the broker creates it at the stream's end (`$`), so a worker started after
the enqueue would otherwise never see the backlog. A job counts as finished when acknowledged,
which taskiq does once its result is saved (its default, WHEN_SAVED).

Taskiq 0.13's worker on redis-py 8 does not stop on SIGTERM while it waits for messages: its
pending XREADGROUP is not cancelled and is read again every 2 s (on redis-py 7.4 it stops in
0.1 s). The figures are taken before the stop, so the worker gets a 1 s grace and is killed.
"""

import asyncio
import time

from common import (
    CHUNK,
    REDIS_URL,
    Counted,
    answer,
    drain_and_answer,
    drain_times,
    paced,
    run_peer,
    start_worker,
    stop_worker,
)
from redis.asyncio import Redis
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

STREAM = "taskiq"
GROUP = "taskiq"
STOP_GRACE_S = 1.0

broker = RedisStreamBroker(REDIS_URL, queue_name=STREAM, consumer_group_name=GROUP).with_result_backend(
    RedisAsyncResultBackend(REDIS_URL, result_ex_time=3600))


@broker.task(task_name="noop")
async def noop():
    return time.time()


def worker(args):
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker

    run_worker(WorkerArgs.from_cli([
        "taskiq_peer:broker", "--workers", str(args.workers), "--max-async-tasks", str(args.concurrency),
        "--log-level", "WARNING", "--shutdown-timeout", "2",
    ]))


def worker_args(args):
    return ("--concurrency", str(args.concurrency), "--workers", str(args.workers))


async def finished(redis):
    """Acknowledged entries of the group: read minus still pending (one XINFO GROUPS)."""
    for group in await redis.xinfo_groups(STREAM):
        if group["name"].decode() == GROUP:
            return int(group["entries-read"] or 0) - int(group["pending"])
    return 0


async def throughput(args):
    await broker.startup()  # creates the stream and the consumer group
    redis = Redis.from_url(REDIS_URL)
    t0 = time.perf_counter()
    for start in range(0, args.jobs, CHUNK):
        await asyncio.gather(*(noop.kiq() for _ in range(start, min(args.jobs, start + CHUNK))))
    enqueue_s = time.perf_counter() - t0

    async def remaining():
        return args.jobs - await finished(redis)

    polls = Counted(remaining)
    await drain_and_answer(redis, polls, __file__, worker_args(args), args.jobs, enqueue_s, STOP_GRACE_S)


async def latency(args):
    await broker.startup()
    redis = Redis.from_url(REDIS_URL)
    proc = start_worker(__file__, *worker_args(args))
    try:
        warm = await noop.kiq()
        await warm.wait_result(timeout=60, check_interval=0.05)  # the worker is up and reading
        sent = await paced(noop.kiq, args.jobs, args.interval_ms / 1000)
        await drain_times(lambda: _left(redis, args.jobs + 1), args.jobs)
        started = [(await task.get_result()).return_value for task, _ in sent]
    finally:
        stop_worker(proc, STOP_GRACE_S)
    answer(latencies_ms=[(s - t) * 1000 for s, (_, t) in zip(started, sent, strict=True)])


async def _left(redis, total):
    return total - await finished(redis)


def main():
    run_peer({"worker": worker, "throughput": throughput, "latency": latency},
             ("--concurrency", int, 20), ("--workers", int, 1))


if __name__ == "__main__":
    main()
