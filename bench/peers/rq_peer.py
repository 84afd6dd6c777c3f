# mypy: ignore-errors
"""RQ (a forked process per job) as a peer: worker and throughput."""

import asyncio
import time

from common import (
    REDIS_URL,
    Counted,
    drain_and_answer,
    run_peer,
)
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue, Worker


def noop():
    return time.time()


def worker(args):
    connection = Redis.from_url(REDIS_URL)
    Worker([Queue(connection=connection)], connection=connection).work(logging_level="WARNING")


def throughput(args):
    queue = Queue(connection=Redis.from_url(REDIS_URL))
    t0 = time.perf_counter()
    # The function by import path: the worker imports this module, not the driver's __main__.
    queue.enqueue_many([Queue.prepare_data("rq_peer.noop") for _ in range(args.jobs)])
    enqueue_s = time.perf_counter() - t0
    asyncio.run(drain(args, enqueue_s, queue.finished_job_registry.key))


async def drain(args, enqueue_s, finished_key):
    redis = AsyncRedis.from_url(REDIS_URL)

    async def remaining():
        return args.jobs - await redis.zcard(finished_key)  # one ZCARD (registry.count also cleans up)

    polls = Counted(remaining)
    await drain_and_answer(redis, polls, __file__, (), args.jobs, enqueue_s)


def main():
    run_peer({"worker": worker, "throughput": throughput})


if __name__ == "__main__":
    main()
