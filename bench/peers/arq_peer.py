# mypy: ignore-errors
"""Raw arq 0.28 (pickle, its own claiming and polling) as a peer: worker, throughput, latency;
and arq as a client of Workhorse (`client-latency`): a stock arq producer with the JSON
serializer the README shows, enqueueing pings that a running Workhorse worker picks up."""

import asyncio
import datetime as dt
import json
import time

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name
from arq.worker import Worker
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
    wait_for_signal,
)


async def noop(ctx):
    return time.time()


def queue_names(count):
    return [default_queue_name] if count == 1 else [f"arq:bench:{i}" for i in range(count)]


async def worker(args):
    """`queues` Workers in one process (one per queue, as Workhorse does), until SIGTERM."""
    settings = RedisSettings.from_dsn(REDIS_URL)
    workers = [Worker(functions=[noop], redis_settings=settings, queue_name=q, max_jobs=args.concurrency,
                      poll_delay=args.poll_delay, handle_signals=False)
               for q in queue_names(args.queues)]
    stop = wait_for_signal()
    tasks = [asyncio.create_task(w.async_run()) for w in workers]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def worker_args(args):
    return ("--poll-delay", str(args.poll_delay), "--concurrency", str(args.concurrency))


async def throughput(args):
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    t0 = time.perf_counter()
    for start in range(0, args.jobs, CHUNK):
        await asyncio.gather(*(redis.enqueue_job("noop") for _ in range(start, min(args.jobs, start + CHUNK))))
    enqueue_s = time.perf_counter() - t0
    polls = Counted(lambda: redis.zcard(default_queue_name))
    await drain_and_answer(redis, polls, __file__, worker_args(args), args.jobs, enqueue_s)


async def latency(args):
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    proc = start_worker(__file__, *worker_args(args))
    try:
        warm = await redis.enqueue_job("noop")
        await warm.result(timeout=60, poll_delay=0.05)  # the worker is up and polling
        sent = await paced(lambda: redis.enqueue_job("noop"), args.jobs, args.interval_ms / 1000)
        await drain_times(lambda: redis.zcard(default_queue_name), args.jobs)
        started = [(await job.result_info()).result for job, _ in sent]
    finally:
        stop_worker(proc)
    answer(latencies_ms=[(s - t) * 1000 for s, (_, t) in zip(started, sent, strict=True)])


async def client_latency(args):
    """Pickup of pings enqueued by arq's client into a Workhorse queue: from just before each
    enqueue_job to the startedAt the ping reports."""
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), job_serializer=lambda v: json.dumps(v).encode(),
                              job_deserializer=json.loads)
    sent = await paced(lambda: redis.enqueue_job("ping", {}, _queue_name=args.queue), args.jobs,
                       args.interval_ms / 1000)
    await drain_times(lambda: redis.zcard(args.queue), args.jobs)
    started = []
    for job, _ in sent:
        info = await job.result_info()
        started.append(dt.datetime.fromisoformat(info.result["startedAt"]).timestamp())
    answer(latencies_ms=[(s - t) * 1000 for s, (_, t) in zip(started, sent, strict=True)])


def main():
    run_peer({"worker": worker, "throughput": throughput, "latency": latency, "client-latency": client_latency},
             ("--concurrency", int, 20), ("--poll-delay", float, 0.5), ("--queues", int, 1),
             ("--queue", str, default_queue_name))


if __name__ == "__main__":
    main()
