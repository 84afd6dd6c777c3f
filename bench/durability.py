"""What REDIS_MIN_REPLICAS_ACK costs an enqueue: `python -m bench.durability`.

A private primary and its replica on this machine (loopback: the replica's round trip is the
cheapest it will ever be; across hosts add the network's). Each round enqueues pings one at a
time (as API calls arrive) and in batches of 100 (the outbox relay's way), once without the
option and once with REDIS_MIN_REPLICAS_ACK=1, back to back, and prints the medians over the
rounds with the ratio of each pair.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from app.config import Settings
from app.jobs import build_registry
from app.queue.connections import connect_redis
from app.queue.durability import NONE, Durability
from app.queue.enqueue import Enqueuer, JobRequest
from bench.redis_server import private_redis
from bench.report import Row, median, median_of_rounds, percentile, render

BATCH = 100


async def _replica_synced(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        async with asyncio.timeout(30):
            while True:
                if (await redis.info("replication")).get("master_link_status") == "up":
                    return
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def _singles(enq: Enqueuer, jobs: int) -> list[float]:
    """Each enqueue's time, ms, one after the other."""
    took = []
    for n in range(jobs):
        started = time.perf_counter()
        await enq.enqueue("ping", {"note": f"s{n}"}, queue="sla-monitor")
        took.append((time.perf_counter() - started) * 1000)
    return took


async def _batches(enq: Enqueuer, jobs: int) -> float:
    """Jobs per second enqueued in batches of BATCH."""
    started = time.perf_counter()
    for first in range(0, jobs, BATCH):
        await enq.enqueue_many([JobRequest("ping", {"note": f"b{n}"}, queue="sla-monitor")
                                for n in range(first, min(first + BATCH, jobs))])
    return jobs / (time.perf_counter() - started)


async def measure(*, jobs: int, rounds: int) -> list[Row]:
    async with private_redis() as primary_url:
        port = primary_url.rsplit(":", 1)[1].split("/")[0]
        async with private_redis("--replicaof", "127.0.0.1", port) as replica_url:
            await _replica_synced(replica_url)
            settings = Settings.load({"REDIS_URL": primary_url, "DATABASE_URL": "postgresql://unused@127.0.0.1/x"})
            registry = build_registry(settings)
            redis = connect_redis(primary_url)
            try:
                plain, durable = Enqueuer(redis, registry, durability=NONE), Enqueuer(
                    redis, registry, durability=Durability(1, 1000))
                await _singles(plain, 200)  # warm: scripts cached, connections open
                await _singles(durable, 200)
                p50: dict[str, list[float]] = {"plain": [], "durable": []}
                p99: dict[str, list[float]] = {"plain": [], "durable": []}
                batch: dict[str, list[float]] = {"plain": [], "durable": []}
                for _ in range(rounds):
                    for name, enq in (("plain", plain), ("durable", durable)):
                        took = await _singles(enq, jobs)
                        p50[name].append(percentile(took, 50))
                        p99[name].append(percentile(took, 99))
                        batch[name].append(await _batches(enq, jobs))
                        await redis.flushdb()
            finally:
                await redis.aclose()
    return _rows(p50, p99, batch)


def _rows(p50: dict[str, list[float]], p99: dict[str, list[float]], batch: dict[str, list[float]]) -> list[Row]:
    def paired(values: dict[str, list[float]]) -> tuple[float, str]:
        return median_of_rounds([d / p for p, d in zip(values["plain"], values["durable"], strict=True)])

    single_ratio, single_spread = paired(p50)
    batch_ratio, batch_spread = paired(batch)
    return [
        Row("durability", "single enqueue p50, without / with REDIS_MIN_REPLICAS_ACK=1",
            f"{median(p50['plain']):.3f} / {median(p50['durable']):.3f} ms: {single_ratio:.2f}x{single_spread}"),
        Row("durability", "single enqueue p99, without / with",
            f"{median(p99['plain']):.3f} / {median(p99['durable']):.3f} ms"),
        Row("durability", f"batches of {BATCH}, without / with",
            f"{median(batch['plain']):,.0f} / {median(batch['durable']):,.0f} jobs/s: "
            f"{batch_ratio:.2f}x{batch_spread}"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.durability", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="enqueues per system per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(jobs=args.jobs, rounds=args.rounds))
    print(render(rows, ["a primary and its replica on this machine's loopback; medians over the rounds, "
                        "each ratio paired within its round"]))


if __name__ == "__main__":
    main()
