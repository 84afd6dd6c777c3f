# mypy: ignore-errors
"""Celery (Redis broker and result backend, prefork pool) as a peer: worker and throughput."""

import asyncio
import time

from celery import Celery
from common import (
    REDIS_URL,
    Counted,
    drain_and_answer,
    run_peer,
)
from redis.asyncio import Redis

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, result_expires=3600)


@app.task(name="noop")
def noop():
    return time.time()


def worker(args):
    app.worker_main(["worker", "--pool=prefork", f"--concurrency={args.concurrency}", "--loglevel=WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])


async def drain(args, enqueue_s):
    """Count the results the backend publishes (one message per finished task)."""
    redis = Redis.from_url(REDIS_URL)
    pubsub = redis.pubsub()
    await pubsub.psubscribe("celery-task-meta-*")
    done = 0

    async def remaining():
        nonlocal done
        while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
            done += 1
        return args.jobs - done

    polls = Counted(remaining, per_call=0)  # reads what the subscription received: no command
    await drain_and_answer(redis, polls, __file__, ("--concurrency", str(args.concurrency)), args.jobs, enqueue_s)


def throughput(args):
    t0 = time.perf_counter()
    for _ in range(args.jobs):
        noop.delay()
    asyncio.run(drain(args, time.perf_counter() - t0))


def main():
    run_peer({"worker": worker, "throughput": throughput},
             ("--concurrency", int, 2))


if __name__ == "__main__":
    main()
