# mypy: ignore-errors
"""Dramatiq with its Redis broker (a Lua dispatch script, a list and a hash per queue) and its
Results middleware (results in Redis, as the other peers keep them) as a peer: worker,
throughput, latency.

The worker is Dramatiq's own command, as deployed: a process per core (2 here) with its default
8 threads each, like Celery's prefork pool. A message leaves the queue's `.msgs` hash when it is
acknowledged, after its result is stored, so that hash's length is what is left to do.
"""

import asyncio
import time

import dramatiq
from common import (
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
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from redis.asyncio import Redis

QUEUE = "default"
MESSAGES_KEY = f"dramatiq:{QUEUE}.msgs"

broker = RedisBroker(url=REDIS_URL)
broker.add_middleware(Results(backend=RedisBackend(url=REDIS_URL), result_ttl=3_600_000))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE, store_results=True, max_retries=0)
def noop():
    return time.time()


def worker(args):
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    dramatiq_main(make_argument_parser().parse_args([
        "dramatiq_peer", "--processes", str(args.processes), "--threads", str(args.threads),
        "--skip-logging",
    ]))


def worker_args(args):
    return ("--processes", str(args.processes), "--threads", str(args.threads))


async def throughput(args):
    t0 = time.perf_counter()
    for _ in range(args.jobs):
        noop.send()
    enqueue_s = time.perf_counter() - t0
    redis = Redis.from_url(REDIS_URL)
    polls = Counted(lambda: redis.hlen(MESSAGES_KEY))
    await drain_and_answer(redis, polls, __file__, worker_args(args), args.jobs, enqueue_s)


async def latency(args):
    redis = Redis.from_url(REDIS_URL)
    proc = start_worker(__file__, *worker_args(args))
    try:
        warm = noop.send()
        await asyncio.to_thread(warm.get_result, block=True, timeout=60_000)  # the worker is up
        sent = await paced(_send, args.jobs, args.interval_ms / 1000)
        await drain_times(lambda: redis.hlen(MESSAGES_KEY), args.jobs)
        started = [message.get_result() for message, _ in sent]
    finally:
        stop_worker(proc)
    answer(latencies_ms=[(s - t) * 1000 for s, (_, t) in zip(started, sent, strict=True)])


async def _send():
    return noop.send()  # a blocking call of a few hundred microseconds, as a web app would make it


def main():
    run_peer({"worker": worker, "throughput": throughput, "latency": latency},
             ("--processes", int, 2), ("--threads", int, 8))


if __name__ == "__main__":
    main()
