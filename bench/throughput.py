"""Throughput of no-op jobs: Workhorse against raw arq, SAQ, Celery and RQ on the same Redis.

Every system gets the same test: the jobs are enqueued with no worker running (enqueue rate),
then one worker process starts and drains the backlog. The processing rate counts from the
first finished job to the last, so start-up time is not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from app.queue.enqueue import JobRequest
from bench.env import BenchEnv, flush, peer_argv, peer_environ, run_json
from bench.peers.common import drain_times
from bench.report import Row, median, rate
from bench.workhorse import THROUGHPUT_QUEUE, enqueuer, running

CONCURRENCY = 20
_BATCH = 500
# RQ forks a process per job (~50-100 jobs/s here): fewer jobs give the same rate sooner.
_RQ_JOBS = 500


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    short: str
    script: str
    args: tuple[str, ...]
    jobs_cap: int | None = None


PEERS = (
    Peer("arq 0.28 defaults (poll_delay 0.5 s, max_jobs 20)", "arq defaults", "arq_peer.py", ("--poll-delay", "0.5")),
    Peer("arq 0.28 poll_delay 0.01 s, max_jobs 20", "arq 0.01 s", "arq_peer.py", ("--poll-delay", "0.01")),
    Peer("SAQ (concurrency 20)", "SAQ", "saq_peer.py", ()),
    Peer("Celery 5.5 (prefork, 2 processes)", "Celery", "celery_peer.py", ("--concurrency", "2")),
    Peer("RQ (forking worker)", "RQ", "rq_peer.py", (), _RQ_JOBS),
)
ARQ_DEFAULT = PEERS[0].name


@dataclass(frozen=True, slots=True)
class Result:
    enqueue_per_s: float
    process_per_s: float


async def workhorse_once(env: BenchEnv, jobs: int) -> tuple[Result, float]:
    """One run; also the worst loop lag the worker reported."""
    await flush(env.redis_url)
    async with enqueuer(env) as enq:
        requests = [JobRequest("ping", queue=THROUGHPUT_QUEUE) for _ in range(jobs)]
        t0 = perf_counter()
        for start in range(0, jobs, _BATCH):
            await enq.enqueue_many(requests[start:start + _BATCH])
        enqueue_s = perf_counter() - t0
        extra = {THROUGHPUT_QUEUE.upper().replace("-", "_") + "_CONCURRENCY": str(CONCURRENCY)}
        async with running(env, [THROUGHPUT_QUEUE], **extra) as worker:
            first, last = await drain_times(lambda: enq.redis.zcard(THROUGHPUT_QUEUE), jobs)
            lag = await worker.loop_lag_max_s()
    return Result(jobs / enqueue_s, (jobs - 1) / (last - first)), lag


async def peer_once(env: BenchEnv, peer: Peer, jobs: int) -> Result:
    await flush(env.redis_url)
    n = min(jobs, peer.jobs_cap or jobs)
    answer = await run_json(peer_argv(env, peer.script, "throughput", "--jobs", str(n), *peer.args),
                            peer_environ(env))
    return Result(float(answer["enqueue_per_s"]), float(answer["process_per_s"]))


def _median(results: list[Result]) -> Result:
    return Result(median([r.enqueue_per_s for r in results]), median([r.process_per_s for r in results]))


async def run(env: BenchEnv, *, jobs: int, runs: int) -> tuple[list[Row], float]:
    """The rows (Workhorse first, with its goals) and the worst loop lag seen."""
    ours: list[Result] = []
    lags: list[float] = []
    peers: dict[str, list[Result]] = {p.name: [] for p in PEERS}
    # Interleaved, so a noisy minute on the shared machine hits every system alike.
    for _ in range(runs):
        result, lag = await workhorse_once(env, jobs)
        ours.append(result)
        lags.append(lag)
        for peer in PEERS:
            peers[peer.name].append(await peer_once(env, peer, jobs))
    mine = _median(ours)
    theirs = {name: _median(results) for name, results in peers.items()}
    fastest = max(PEERS, key=lambda p: theirs[p.name].process_per_s)
    vs_fastest = mine.process_per_s / theirs[fastest.name].process_per_s
    vs_arq = mine.process_per_s / theirs[ARQ_DEFAULT].process_per_s
    rows = [Row("throughput", f"Workhorse (concurrency {CONCURRENCY}, {jobs} pings)", _figure(mine),
                f">= 1.0x fastest peer: {vs_fastest:.2f}x ({fastest.short})", vs_fastest >= 1.0),
            Row("throughput", "", "", f">= 1.5x arq defaults: {vs_arq:.1f}x", vs_arq >= 1.5)]
    for peer in PEERS:
        label = peer.name if peer.jobs_cap is None or peer.jobs_cap >= jobs else f"{peer.name}, {peer.jobs_cap} jobs"
        rows.append(Row("throughput", label, _figure(theirs[peer.name])))
    return rows, max(lags)


def _figure(r: Result) -> str:
    return f"enqueue {rate(r.enqueue_per_s)}, process {rate(r.process_per_s)}"
