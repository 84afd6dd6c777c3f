# mypy: ignore-errors
"""SAQ (Redis lists with blocking pops) as a peer: worker, throughput, latency."""

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
from saq import Queue, Worker
from saq.queue.base import JobError


async def noop(ctx):
    return time.time()


async def connected_queue():
    queue = Queue.from_url(REDIS_URL)
    await queue.connect()
    return queue


async def worker(args):
    """SAQ's own worker; it stops on SIGTERM by itself."""
    await Worker(await connected_queue(), functions=[noop], concurrency=args.concurrency).start()


async def throughput(args):
    queue = await connected_queue()
    t0 = time.perf_counter()
    for start in range(0, args.jobs, CHUNK):
        await asyncio.gather(*(queue.enqueue("noop") for _ in range(start, min(args.jobs, start + CHUNK))))
    enqueue_s = time.perf_counter() - t0
    polls = Counted(lambda: queue.count("incomplete"))  # one ZCARD
    await drain_and_answer(queue.redis, polls, __file__, ("--concurrency", str(args.concurrency)), args.jobs, enqueue_s)


async def worker_up(queue):
    """Until a job runs. SAQ 0.26 sweeps (aborts) a job applied before its worker started, so
    the probe is repeated until one gets through."""
    async with asyncio.timeout(60):
        while True:
            try:
                await queue.apply("noop", timeout=5)
                return
            except JobError:
                await asyncio.sleep(0.1)


async def latency(args):
    queue = await connected_queue()
    proc = start_worker(__file__, "--concurrency", str(args.concurrency))
    try:
        await worker_up(queue)
        sent = await paced(lambda: queue.enqueue("noop"), args.jobs, args.interval_ms / 1000)
        await drain_times(lambda: queue.count("incomplete"), args.jobs)
        jobs = await queue.jobs([job.key for job, _ in sent])
    finally:
        stop_worker(proc)
    answer(latencies_ms=[(job.result - t) * 1000 for job, (_, t) in zip(jobs, sent, strict=True)])


def main():
    run_peer({"worker": worker, "throughput": throughput, "latency": latency},
             ("--concurrency", int, 20))


if __name__ == "__main__":
    main()
