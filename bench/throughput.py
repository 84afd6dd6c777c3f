"""Throughput of no-op jobs: Workhorse against raw arq, SAQ, Celery, RQ, Taskiq, Dramatiq and
BullMQ (Node) on the same Redis, with the Redis commands each system spends per job.

Every system gets the same test: the jobs are enqueued with no worker running (enqueue rate),
then the worker starts and drains the backlog. The processing rate counts from the first
finished job to the last, so start-up time is not part of it. Commands per job are the server's
`total_commands_processed` from just before the worker starts to the last job finished, less
the bench's own polls, divided by the jobs: start-up, claiming, results, stats and metrics all
count. The asyncio systems run one process with 20 jobs at a time; Celery and Dramatiq run a
process per core, as they are deployed. BullMQ runs one Node process, at Workhorse's concurrency
(20) with the runbooks' retention (as Workhorse keeps results) and with removeOnComplete: true,
and at 50, 100 and 200 (the best of them shown). Node compiles its hot code as it runs: a cold
BullMQ worker spends two to three times the CPU per job on its first thousand jobs, 1.5x over the
first five thousand, and a deployed one is warm. So BullMQ and, for the pairing, a second
Workhorse run are measured warm: a backlog as large again goes first, untimed.

For Workhorse and BullMQ the CPU that the worker process and Redis spend per job is read over
the same window as the rate: against BullMQ at equal concurrency, that says what bounds the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from app.queue.enqueue import JobRequest
from bench.cpu import CpuPerJob, CpuWindow
from bench.env import BenchEnv, commands_processed, flush, peer_argv, peer_environ, run_json
from bench.peer_envs import BULLMQ_SCRIPT
from bench.peers.common import Counted, drain_times
from bench.report import Row, median, rate
from bench.workhorse import THROUGHPUT_QUEUE, enqueuer, running

CONCURRENCY = 20
GOAL_VS_FASTEST = 2.0
_BATCH = 500
# RQ forks a process per job (~50-100 jobs/s here): fewer jobs give the same rate sooner (500 in
# a full run, 100 in a quick one).
_RQ_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    short: str
    script: str
    args: tuple[str, ...]
    jobs_share: float = 1.0
    """The part of the backlog this peer is given."""

    def jobs(self, backlog: int) -> int:
        return max(2, round(backlog * self.jobs_share))


PEERS = (
    Peer("arq 0.28 defaults (poll_delay 0.5 s, max_jobs 20)", "arq defaults", "arq_peer.py", ("--poll-delay", "0.5")),
    Peer("arq 0.28 poll_delay 0.01 s, max_jobs 20", "arq 0.01 s", "arq_peer.py", ("--poll-delay", "0.01")),
    Peer("SAQ (concurrency 20)", "SAQ", "saq_peer.py", ()),
    Peer("Celery (prefork, 2 processes)", "Celery", "celery_peer.py", ("--concurrency", "2")),
    Peer("RQ (forking worker)", "RQ", "rq_peer.py", (), _RQ_SHARE),
    Peer("Taskiq RedisStreamBroker (1 process, 20 at a time)", "Taskiq", "taskiq_peer.py",
         ("--workers", "1", "--concurrency", "20")),
    Peer("Dramatiq 2 Redis (1 process x 8 threads)", "Dramatiq 1 process", "dramatiq_peer.py",
         ("--processes", "1")),
    Peer("Dramatiq 2 Redis (2 processes x 8 threads, its default here)", "Dramatiq", "dramatiq_peer.py",
         ("--processes", "2")),
)
ARQ_DEFAULT = PEERS[0].name
# BullMQ, one Node process: at Workhorse's concurrency with either retention, and at the higher
# ones its users raise it to. Which of those serves it best changed from run to run here (the
# machine's noise is larger than their differences), so each is measured and the best shown.
BULLMQ_RUNBOOK = Peer(f"BullMQ (Node, concurrency {CONCURRENCY}, the runbooks' retention)", "BullMQ", BULLMQ_SCRIPT,
                      ("--concurrency", str(CONCURRENCY), "--retention", "runbook"))
BULLMQ_NONE = Peer(f"BullMQ (Node, concurrency {CONCURRENCY}, removeOnComplete: true)", "BullMQ", BULLMQ_SCRIPT,
                   ("--concurrency", str(CONCURRENCY), "--retention", "none"))
BULLMQ_HIGHER = tuple(Peer(f"BullMQ (Node, concurrency {c}, removeOnComplete: true)", f"BullMQ {c}", BULLMQ_SCRIPT,
                           ("--concurrency", str(c), "--retention", "none")) for c in (50, 100, 200))
BULLMQ = (BULLMQ_RUNBOOK, BULLMQ_NONE, *BULLMQ_HIGHER)
BULLMQ_NAMES = frozenset(p.name for p in BULLMQ)
GOAL_VS_BULLMQ = 2.0
CPU_BOUND_SHARE = 0.85
"""Redis busy this share of a core (or more) over the drain is what bounds the rate."""


@dataclass(frozen=True, slots=True)
class Result:
    enqueue_per_s: float
    process_per_s: float
    commands_per_job: float
    cpu: CpuPerJob
    """Read for Workhorse and BullMQ only (NaN for the others)."""

    def share(self, seconds_per_job: float) -> float:
        """The part of the drain's wall time that this much time per job fills (1 = all of it)."""
        return seconds_per_job * self.process_per_s


async def workhorse_once(env: BenchEnv, jobs: int, warmup: int = 0) -> tuple[Result, float]:
    """One run; also the worst loop lag the worker reported. With a `warmup`, that many more jobs
    go first, and the rate and the CPU are read over the last `jobs` (commands over them all)."""
    await flush(env.redis_url)
    async with enqueuer(env) as enq:
        total = warmup + jobs
        requests = [JobRequest("ping", queue=THROUGHPUT_QUEUE) for _ in range(total)]
        t0 = perf_counter()
        for start in range(0, total, _BATCH):
            await enq.enqueue_many(requests[start:start + _BATCH])
        enqueue_s = perf_counter() - t0
        extra = {THROUGHPUT_QUEUE.upper().replace("-", "_") + "_CONCURRENCY": str(CONCURRENCY)}
        before = await commands_processed(env.redis_url)
        async with running(env, [THROUGHPUT_QUEUE], **extra) as worker:
            cpu = CpuWindow(enq.redis, worker.pid)
            polls = Counted(cpu.watching(lambda: enq.redis.zcard(THROUGHPUT_QUEUE), jobs))
            first, last = await drain_times(polls, jobs)
            # Less the polls, the CPU window's INFO and this INFO itself.
            commands = await commands_processed(env.redis_url) - before - polls.commands - 2
            used = await cpu.per_job(jobs - 1)  # the jobs finished inside the window
            lag = await worker.loop_lag_max_s()
    return Result(total / enqueue_s, (jobs - 1) / (last - first), commands / total, used), lag


async def peer_once(env: BenchEnv, peer: Peer, jobs: int, warmup: int = 0) -> Result:
    await flush(env.redis_url)
    n = peer.jobs(jobs)
    warm = ("--warmup", str(warmup)) if warmup else ()
    answer = await run_json(peer_argv(env, peer.script, "throughput", "--jobs", str(n), *warm, *peer.args),
                            peer_environ(env))
    rates = (float(answer["enqueue_per_s"]), float(answer["process_per_s"]), float(answer["commands_per_job"]))
    return Result(*rates, CpuPerJob.from_answer(answer))


def _median(results: list[Result]) -> Result:
    return Result(median([r.enqueue_per_s for r in results]), median([r.process_per_s for r in results]),
                  median([r.commands_per_job for r in results]), CpuPerJob.median_of([r.cpu for r in results]))


async def run(env: BenchEnv, *, jobs: int, runs: int, sweep: bool = True) -> tuple[list[Row], float]:
    """The rows (Workhorse first, with its goals) and the worst loop lag seen; without `sweep`
    (a quick run), BullMQ only at Workhorse's concurrency."""
    bullmq = BULLMQ if sweep else (BULLMQ_RUNBOOK, BULLMQ_NONE)
    ours: list[Result] = []
    ours_warm: list[Result] = []
    lags: list[float] = []
    peers: dict[str, list[Result]] = {p.name: [] for p in (*PEERS, *bullmq)}
    # Interleaved, so a noisy minute on the shared machine hits every system alike.
    for _ in range(runs):
        result, lag = await workhorse_once(env, jobs)
        ours.append(result)
        lags.append(lag)
        for peer in PEERS:
            peers[peer.name].append(await peer_once(env, peer, jobs))
        result, lag = await workhorse_once(env, jobs, warmup=jobs)
        ours_warm.append(result)
        lags.append(lag)
        for peer in bullmq:
            peers[peer.name].append(await peer_once(env, peer, jobs, warmup=jobs))
    mine, mine_warm = _median(ours), _median(ours_warm)
    theirs = {name: _median(results) for name, results in peers.items()}
    # Each run's ratio pairs figures taken a minute apart; the median of those ratios travels
    # between machines better than a ratio of medians. BullMQ is paired with the warmed runs.
    ratio = {name: median([o.process_per_s / t.process_per_s
                           for o, t in zip(ours_warm if name in BULLMQ_NAMES else ours, results, strict=True)])
             for name, results in peers.items()}
    fastest = max(PEERS, key=lambda p: theirs[p.name].process_per_s)
    vs_fastest, vs_arq = ratio[fastest.name], ratio[ARQ_DEFAULT]
    rows = [Row("throughput", f"Workhorse (1 process, concurrency {CONCURRENCY}, {jobs} pings)", _figure(mine),
                f">= {GOAL_VS_FASTEST:.0f}x fastest Python peer: {vs_fastest:.2f}x ({fastest.short})",
                vs_fastest >= GOAL_VS_FASTEST),
            Row("throughput", "", "", f">= 1.5x arq defaults: {vs_arq:.1f}x", vs_arq >= 1.5)]
    for peer in PEERS:
        label = peer.name if peer.jobs(jobs) == jobs else f"{peer.name}, {peer.jobs(jobs)} jobs"
        rows.append(Row("throughput", label, f"Workhorse {ratio[peer.name]:.2f}x; {_figure(theirs[peer.name])}"))
    rows.append(Row("throughput", f"Workhorse warmed like BullMQ ({jobs} more pings first, untimed)",
                    _figure(mine_warm)))
    for peer in (BULLMQ_RUNBOOK, BULLMQ_NONE):
        rows.append(Row("throughput", f"{peer.name}, warmed", f"Workhorse warmed {ratio[peer.name]:.2f}x; "
                        f"{_figure(theirs[peer.name])}"))
    if sweep:
        best = max(BULLMQ_HIGHER, key=lambda p: theirs[p.name].process_per_s)
        others = ", ".join(f"{p.short} {rate(theirs[p.name].process_per_s)}" for p in BULLMQ_HIGHER if p is not best)
        rows.append(Row("throughput", f"{best.name}, warmed: its best of 50/100/200 here",
                        f"Workhorse warmed {ratio[best.name]:.2f}x; {_figure(theirs[best.name])} ({others})"))
    return [*rows, *_versus_bullmq(mine_warm, theirs, ratio)], max(lags)


def _versus_bullmq(mine: Result, theirs: dict[str, Result], ratio: dict[str, float]) -> list[Row]:
    """The goal at equal concurrency, against both of BullMQ's retentions at 20, and the CPU each
    side spends per job: when the goal is not met, that says what bounds Workhorse."""
    same, fastest = ratio[BULLMQ_RUNBOOK.name], ratio[BULLMQ_NONE.name]
    met = min(same, fastest) >= GOAL_VS_BULLMQ
    rows = [Row("throughput", f"Workhorse / BullMQ at equal concurrency ({CONCURRENCY} jobs at a time each, warmed)",
                f"{same:.2f}x with the runbooks' retention (Workhorse keeps results alike); "
                f"{fastest:.2f}x with removeOnComplete: true",
                f">= {GOAL_VS_BULLMQ:.0f}x both", met)]
    closest = BULLMQ_RUNBOOK if same <= fastest else BULLMQ_NONE
    name = "what bounds Workhorse against BullMQ" if not met else "CPU per job against BullMQ"
    return [*rows, Row("throughput", name, _bound(mine, theirs[closest.name]))]


def _bound(mine: Result, bullmq: Result) -> str:
    """Redis when it was busy the whole drain. Else the two factors of the rates' ratio: CPU per
    job, and the cores each worker used through the drain, with what kept Workhorse's event loop
    from running the rest of it: waiting for a core, or for Redis's replies."""
    worker, waited, redis = (mine.share(s) for s in (mine.cpu.worker_s, mine.cpu.worker_wait_s, mine.cpu.redis_s))
    if redis >= CPU_BOUND_SHARE:
        return f"Redis, busy {redis:.0%} of the drain ({_us(mine.cpu.redis_s)} CPU per job)"
    less = bullmq.cpu.worker_s / mine.cpu.worker_s
    return (f"CPU per job, {less:.1f}x less than BullMQ's ({_us(mine.cpu.worker_s)} against "
            f"{_us(bullmq.cpu.worker_s)}; 2x needs <= {_us(bullmq.cpu.worker_s / GOAL_VS_BULLMQ)}), times the cores "
            f"each worker used through the drain: {worker:.2f} against {bullmq.share(bullmq.cpu.worker_s):.2f} (Node's "
            f"compiler and collector threads count); Workhorse's event loop waited for a core {waited:.0%} of the "
            f"drain (BullMQ's {bullmq.share(bullmq.cpu.worker_wait_s):.0%}: 2 cores shared with Redis at {redis:.2f}, "
            f"the bench and other work) and for Redis's replies {max(0.0, 1 - worker - waited):.0%}")


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def _figure(r: Result) -> str:
    return (f"process {rate(r.process_per_s)}, {r.commands_per_job:.1f} commands/job; "
            f"enqueue {rate(r.enqueue_per_s)}")
