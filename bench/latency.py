"""Pickup latency: how long a job enqueued into an idle, waiting worker waits before it starts.

Jobs are enqueued one at a time, 20 ms apart (50 jobs/s), each timed from just before its
enqueue call to the moment the job function started (the job reports it). Workhorse runs as
deployed: one process serving all seven queues with default settings. Beside it, the floor: a
bare redis-py PUBLISH reaching a subscriber in another process on the same Redis, paced and
timed the same way (bench/limits.py); a pickup can hardly beat one such hop. For Workhorse,
deferred jobs are timed too: from their scheduled time to their start; and pings enqueued by a
stock arq client (arq 0.28 with the README's JSON serializer, in its own environment), which
publishes nothing: the worker hears its ZADD through keyspace notifications; and pings the web
app's BullMQ producer adds (the bullmq npm client's `add`, one at a time), taken by a worker's
BullMQ ingress (BULLMQ_PREFIX=bull): from just before `add` to the ping's start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

from app.queue.enqueue import Enqueuer
from bench.env import BenchEnv, flush, peer_argv, peer_environ, run_json
from bench.limits import pubsub_floor_ms
from bench.peer_envs import BULLMQ_SCRIPT
from bench.peers.common import drain_times
from bench.report import Row, median, percentile
from bench.workhorse import THROUGHPUT_QUEUE, enqueuer, running

P50_GOAL_MS = 1.0
P99_GOAL_MS = 3.0
FOREIGN_GOAL_X = 2.0
"""Producers that are not Workhorse's own (a stock arq client, BullMQ): pickup p50 within this of native."""
BULLMQ_P50_GOAL_MS = 5.0
DEFERRED_GOAL_MS = 20.0
DEFER_S = 0.5


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    script: str
    args: tuple[str, ...]


PEERS = (
    Peer("arq 0.28 defaults (poll_delay 0.5 s)", "arq_peer.py", ("--poll-delay", "0.5")),
    Peer("SAQ (concurrency 20)", "saq_peer.py", ()),
    Peer("Taskiq RedisStreamBroker (1 process)", "taskiq_peer.py", ("--workers", "1")),
    Peer("Dramatiq Redis (2 processes x 8 threads)", "dramatiq_peer.py", ()),
    Peer("BullMQ (Node, concurrency 20)", BULLMQ_SCRIPT, ("--concurrency", "20")),
)


@dataclass(frozen=True, slots=True)
class Timings:
    pickup_ms: list[float]
    deferred_ms: list[float]
    """Start minus scheduled time of deferred jobs (negative would mean early)."""
    arq_client_ms: list[float]
    """Pickup of pings a stock arq client enqueued."""
    bullmq_ms: list[float]
    """Pickup of pings the bullmq npm client added, through the BullMQ ingress."""
    loop_lag_s: float


async def _paced(enq: Enqueuer, jobs: int, interval_s: float, defer_s: float | None) -> list[tuple[str, float]]:
    """(job id, wall time it may start: just before the enqueue, or its scheduled time)."""
    sent: list[tuple[str, float]] = []
    start = time.perf_counter()
    for i in range(jobs):
        await asyncio.sleep(max(0.0, start + i * interval_s - time.perf_counter()))
        before = time.time()
        done = await enq.enqueue("ping", queue=THROUGHPUT_QUEUE, defer_s=defer_s)
        assert done is not None
        sent.append((done.job_id, done.run_at_ms / 1000 if defer_s else before))
    return sent


async def _waits_ms(enq: Enqueuer, sent: list[tuple[str, float]]) -> list[float]:
    await drain_times(lambda: enq.redis.zcard(THROUGHPUT_QUEUE), len(sent))
    waits = []
    for job_id, since in sent:
        info = await enq.job(job_id, THROUGHPUT_QUEUE).outcome()
        assert info is not None and isinstance(info.result, dict)
        started = dt.datetime.fromisoformat(info.result["startedAt"]).timestamp()
        waits.append((started - since) * 1000)
    return waits


async def workhorse_once(env: BenchEnv, jobs: int, interval_s: float) -> Timings:
    await flush(env.redis_url)
    async with enqueuer(env) as enq, running(env) as worker:
        await worker.wait_ready()
        pickup = await _waits_ms(enq, await _paced(enq, jobs, interval_s, None))
        deferred = await _waits_ms(enq, await _paced(enq, jobs // 4, interval_s, DEFER_S))
        arq_client = await _arq_client_ms(env, jobs, interval_s)
        lag = await worker.loop_lag_max_s()
    return Timings(pickup, deferred, arq_client, await _bullmq_producer_ms(env, jobs, interval_s), lag)


async def _bullmq_producer_ms(env: BenchEnv, jobs: int, interval_s: float) -> list[float]:
    """A worker whose BullMQ ingress takes the throughput queue; the Node producer adds pings."""
    await flush(env.redis_url)
    ingress = {"BULLMQ_PREFIX": "bull", "BULLMQ_QUEUES": THROUGHPUT_QUEUE}
    async with enqueuer(env) as enq, running(env, None, **ingress) as worker:
        await worker.wait_ready()
        args = ("producer-latency", "--jobs", str(jobs), "--interval-ms", str(interval_s * 1000),
                "--queue", THROUGHPUT_QUEUE)
        answer = await run_json(peer_argv(env, BULLMQ_SCRIPT, *args), peer_environ(env))
        waits = []
        for job_id, added_ms in answer["sent"]:
            info = await enq.job(str(job_id), THROUGHPUT_QUEUE).wait(timeout_s=60, poll_delay=0.02)
            assert isinstance(info.result, dict)
            started = dt.datetime.fromisoformat(info.result["startedAt"]).timestamp()
            waits.append((started - float(added_ms) / 1000) * 1000)
        return waits


async def _arq_client_ms(env: BenchEnv, jobs: int, interval_s: float) -> list[float]:
    args = ("client-latency", "--jobs", str(jobs), "--interval-ms", str(interval_s * 1000), "--queue", THROUGHPUT_QUEUE)
    answer = await run_json(peer_argv(env, "arq_peer.py", *args), peer_environ(env))
    return [float(v) for v in answer["latencies_ms"]]


async def peer_once(env: BenchEnv, peer: Peer, jobs: int, interval_s: float) -> list[float]:
    await flush(env.redis_url)
    args = ("latency", "--jobs", str(jobs), "--interval-ms", str(interval_s * 1000), *peer.args)
    answer = await run_json(peer_argv(env, peer.script, *args), peer_environ(env))
    return [float(v) for v in answer["latencies_ms"]]


def _summary(runs: list[list[float]]) -> tuple[float, float, float]:
    """Median over runs of each run's p50, p95 and p99."""
    return (median([percentile(r, 50) for r in runs]), median([percentile(r, 95) for r in runs]),
            median([percentile(r, 99) for r in runs]))


def _figure(p: tuple[float, float, float]) -> str:
    return f"p50 {p[0]:.2f} ms, p95 {p[1]:.2f} ms, p99 {p[2]:.2f} ms"


async def run(env: BenchEnv, *, jobs: int, runs: int, interval_s: float = 0.02) -> tuple[list[Row], float]:
    ours: list[Timings] = []
    floor: list[list[float]] = []
    theirs: dict[str, list[list[float]]] = {p.name: [] for p in PEERS}
    for _ in range(runs):
        floor.append(await pubsub_floor_ms(env, messages=jobs, interval_s=interval_s))
        ours.append(await workhorse_once(env, jobs, interval_s))
        for peer in PEERS:
            theirs[peer.name].append(await peer_once(env, peer, jobs, interval_s))
    mine, bare = _summary([t.pickup_ms for t in ours]), _summary(floor)
    # Paired per run, like the throughput ratios.
    p50_x = median([percentile(t.pickup_ms, 50) / percentile(f, 50) for t, f in zip(ours, floor, strict=True)])
    p99_x = median([percentile(t.pickup_ms, 99) / percentile(f, 99) for t, f in zip(ours, floor, strict=True)])
    label = f"pickup ({jobs} jobs, {interval_s * 1000:.0f} ms apart = {1 / interval_s:.0f}/s)"
    rows = [
        Row(label, "Workhorse (7 queues, defaults)", f"{p50_x:.1f}x / {p99_x:.1f}x floor (p50 / p99); {_figure(mine)}",
            f"p50 <= {P50_GOAL_MS:.0f} ms", mine[0] <= P50_GOAL_MS),
        Row(label, "", "", f"p99 <= {P99_GOAL_MS:.0f} ms", mine[2] <= P99_GOAL_MS),
        Row(label, "floor: redis-py PUBLISH -> subscriber process", _figure(bare)),
    ]
    arq_client = _summary([t.arq_client_ms for t in ours])
    arq_x = median([percentile(t.arq_client_ms, 50) / percentile(t.pickup_ms, 50) for t in ours])
    rows.append(Row(label, "Workhorse, jobs from a stock arq client (keyspace wake-up)",
                    f"{arq_x:.1f}x native p50; {_figure(arq_client)}", f"<= {FOREIGN_GOAL_X:.0f}x native",
                    arq_x <= FOREIGN_GOAL_X))
    bullmq = _summary([t.bullmq_ms for t in ours])
    bullmq_x = median([percentile(t.bullmq_ms, 50) / percentile(t.pickup_ms, 50) for t in ours])
    rows.append(Row(label, "Workhorse, jobs a BullMQ producer adds (the BullMQ ingress)",
                    f"{bullmq_x:.1f}x native p50; {_figure(bullmq)}", f"p50 <= {BULLMQ_P50_GOAL_MS:.0f} ms",
                    bullmq[0] <= BULLMQ_P50_GOAL_MS))
    rows += [Row(label, name, _figure(_summary(results))) for name, results in theirs.items()]
    deferred = [d for t in ours for d in t.deferred_ms]
    early, late = min(deferred), max(deferred)
    # Scores are whole milliseconds and arq rounds its clock to them: up to 1 ms early is on time.
    on_time = early >= -1 and late <= DEFERRED_GOAL_MS
    rows.append(Row(f"deferred start ({len(deferred)} jobs, +{DEFER_S} s)", "Workhorse: start - scheduled time",
                    f"min {early:.1f} ms, p50 {percentile(deferred, 50):.1f} ms, max {late:.1f} ms",
                    f"within 0..{DEFERRED_GOAL_MS:.0f} ms", on_time))
    return rows, max(t.loop_lag_s for t in ours)
