"""Throughput of no-op jobs: Workhorse against raw arq, SAQ, Celery, RQ, Taskiq and Dramatiq on
the same Redis, with the Redis commands each system spends per job.

Every system gets the same test: the jobs are enqueued with no worker running (enqueue rate),
then the worker starts and drains the backlog. The processing rate counts from the first
finished job to the last, so start-up time is not part of it. Commands per job are the server's
`total_commands_processed` from just before the worker starts to the last job finished, less
the bench's own polls, divided by the jobs: start-up, claiming, results, stats and metrics all
count. The asyncio systems run one process with 20 jobs at a time; Celery and Dramatiq run a
process per core, as they are deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from app.queue.enqueue import JobRequest
from bench.env import BenchEnv, commands_processed, flush, peer_argv, peer_environ, run_json
from bench.peers.common import Counted, drain_times
from bench.report import Row, median, rate
from bench.workhorse import THROUGHPUT_QUEUE, enqueuer, running

CONCURRENCY = 20
GOAL_VS_FASTEST = 2.0
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
    Peer("Celery (prefork, 2 processes)", "Celery", "celery_peer.py", ("--concurrency", "2")),
    Peer("RQ (forking worker)", "RQ", "rq_peer.py", (), _RQ_JOBS),
    Peer("Taskiq RedisStreamBroker (1 process, 20 at a time)", "Taskiq", "taskiq_peer.py",
         ("--workers", "1", "--concurrency", "20")),
    Peer("Dramatiq 2 Redis (1 process x 8 threads)", "Dramatiq 1 process", "dramatiq_peer.py",
         ("--processes", "1")),
    Peer("Dramatiq 2 Redis (2 processes x 8 threads, its default here)", "Dramatiq", "dramatiq_peer.py",
         ("--processes", "2")),
)
ARQ_DEFAULT = PEERS[0].name


@dataclass(frozen=True, slots=True)
class Result:
    enqueue_per_s: float
    process_per_s: float
    commands_per_job: float


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
        polls = Counted(lambda: enq.redis.zcard(THROUGHPUT_QUEUE))
        before = await commands_processed(env.redis_url)
        async with running(env, [THROUGHPUT_QUEUE], **extra) as worker:
            first, last = await drain_times(polls, jobs)
            commands = await commands_processed(env.redis_url) - before - polls.commands - 1
            lag = await worker.loop_lag_max_s()
    return Result(jobs / enqueue_s, (jobs - 1) / (last - first), commands / jobs), lag


async def peer_once(env: BenchEnv, peer: Peer, jobs: int) -> Result:
    await flush(env.redis_url)
    n = min(jobs, peer.jobs_cap or jobs)
    answer = await run_json(peer_argv(env, peer.script, "throughput", "--jobs", str(n), *peer.args),
                            peer_environ(env))
    return Result(float(answer["enqueue_per_s"]), float(answer["process_per_s"]), float(answer["commands_per_job"]))


def _median(results: list[Result]) -> Result:
    return Result(median([r.enqueue_per_s for r in results]), median([r.process_per_s for r in results]),
                  median([r.commands_per_job for r in results]))


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
    # Each run's ratio pairs figures taken a minute apart; the median of those ratios travels
    # between machines better than a ratio of medians.
    ratio = {p.name: median([o.process_per_s / t.process_per_s for o, t in zip(ours, peers[p.name], strict=True)])
             for p in PEERS}
    fastest = max(PEERS, key=lambda p: theirs[p.name].process_per_s)
    vs_fastest, vs_arq = ratio[fastest.name], ratio[ARQ_DEFAULT]
    rows = [Row("throughput", f"Workhorse (1 process, concurrency {CONCURRENCY}, {jobs} pings)", _figure(mine),
                f">= {GOAL_VS_FASTEST:.0f}x fastest peer: {vs_fastest:.2f}x ({fastest.short})",
                vs_fastest >= GOAL_VS_FASTEST),
            Row("throughput", "", "", f">= 1.5x arq defaults: {vs_arq:.1f}x", vs_arq >= 1.5)]
    for peer in PEERS:
        label = peer.name if peer.jobs_cap is None or peer.jobs_cap >= jobs else f"{peer.name}, {peer.jobs_cap} jobs"
        rows.append(Row("throughput", label, f"Workhorse {ratio[peer.name]:.2f}x; {_figure(theirs[peer.name])}"))
    return rows, max(lags)


def _figure(r: Result) -> str:
    return (f"process {rate(r.process_per_s)}, {r.commands_per_job:.1f} commands/job; "
            f"enqueue {rate(r.enqueue_per_s)}")
