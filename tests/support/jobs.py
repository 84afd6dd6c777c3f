"""Jobs that exist only for tests (loaded with WORKHORSE_EXTRA_JOBS=tests.support.jobs).

Their state lives in Redis so a job behaves the same in the test process and in a worker
subprocess. Each job records every run in a Redis list, so tests read exactly what ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from app.errors import NotFound, RateLimited, TransientError
from app.jobs.resources import Job
from app.queue.payload import Payload
from app.queue.registry import ANY_QUEUE, JobSpec

if TYPE_CHECKING:
    from app.jobs.resources import Resources
    from app.queue.enqueue import Enqueued

RUNS_KEY = "test:runs"


class Probe(Payload):
    tag: str
    fail_times: int = 0
    error: str = Field("transient", pattern="^(transient|permanent|bug|rate_limited)$")
    sleep_ms: int = 0
    block_ms: int = 0
    """Block the event loop itself (time.sleep) this long, as CPU-bound code in a job would."""
    crash: bool = False
    """Kill the worker process outright (SIGKILL) on every run: a poison pill."""


async def _record(job: Job, p: Probe, event: str) -> None:
    entry = {"tag": p.tag, "event": event, "attempt": job.attempt, "jobId": job.job_id, "t": time.time()}
    await job.res.redis.rpush(RUNS_KEY, json.dumps(entry))


async def probe(job: Job, p: Probe) -> dict[str, object]:
    """Fails the first `failTimes` runs with `error`, sleeping `sleepMs` first; then succeeds."""
    await _record(job, p, "start")
    if p.crash:
        os.kill(os.getpid(), signal.SIGKILL)
    if p.sleep_ms:
        await asyncio.sleep(p.sleep_ms / 1000)
    if p.block_ms:
        time.sleep(p.block_ms / 1000)  # noqa: ASYNC251  # on purpose: a stalled event loop
    runs = await job.res.redis.incr(f"test:probe:{p.tag}")
    if runs <= p.fail_times:
        await _record(job, p, "fail")
        if p.error == "transient":
            raise TransientError(f"{p.tag} failed on purpose (run {runs})")
        if p.error == "rate_limited":
            raise RateLimited(f"{p.tag} rate limited", retry_after_s=1)
        if p.error == "permanent":
            raise NotFound(f"{p.tag}: row does not exist")
        raise ZeroDivisionError(f"{p.tag}: a bug")
    await _record(job, p, "done")
    return {"tag": p.tag, "runs": runs}


PROVIDER_DOWN_KEY = "test:provider-down"


class CallProvider(Payload):
    tag: str


async def call_provider(job: Job, p: CallProvider) -> dict[str, object]:
    """One call to the "storage" provider, which fails while the Redis flag PROVIDER_DOWN_KEY is set."""
    await _record(job, Probe(tag=p.tag), "start")
    async with job.res.breakers.guard("storage"):
        if await job.res.redis.exists(PROVIDER_DOWN_KEY):
            await _record(job, Probe(tag=p.tag), "fail")
            raise TransientError("provider is down")
    await _record(job, Probe(tag=p.tag), "done")
    return {"tag": p.tag}


async def db_probe(job: Job, p: CallProvider) -> dict[str, object]:
    """Needs PostgreSQL: fails (transiently, by the registry's rules) while it is down."""
    await _record(job, Probe(tag=p.tag), "start")
    value = await job.res.db.fetchval("SELECT 1")
    await _record(job, Probe(tag=p.tag), "done")
    return {"tag": p.tag, "value": value}


async def block_thread(job: Job, p: CallProvider) -> dict[str, object]:
    """Blocks a thread of the default executor for good (like open() of a FIFO): the task can
    be cancelled, the thread cannot."""
    await _record(job, Probe(tag=p.tag), "start")
    await asyncio.to_thread(threading.Event().wait)
    return {"tag": p.tag}


class ProgressProbe(Payload):
    tag: str
    percents: list[int]
    pause_ms: int = 600


async def report_progress(job: Job, p: ProgressProbe) -> dict[str, object]:
    """Reports each of `percents` in turn, `pauseMs` apart, then finishes."""
    for percent in p.percents:
        await job.progress(percent)
        await asyncio.sleep(p.pause_ms / 1000)
    return {"tag": p.tag}


SPECS = (
    JobSpec(name="probe", queue=ANY_QUEUE, payload=Probe, run=probe, description="test probe"),
    JobSpec(name="call_provider", queue="intake-routing", payload=CallProvider, run=call_provider,
            description="test job calling a provider behind a breaker"),
    JobSpec(name="db_probe", queue="intake-routing", payload=CallProvider, run=db_probe,
            description="test job that needs PostgreSQL"),
    JobSpec(name="block_thread", queue=ANY_QUEUE, payload=CallProvider, run=block_thread,
            description="test job whose thread never returns"),
    JobSpec(name="report_progress", queue=ANY_QUEUE, payload=ProgressProbe, run=report_progress,
            description="test job reporting progress"),
)


async def result_of(res: Resources, enqueued: Enqueued | None, queue: str, timeout_s: float = 20.0) -> Any:
    """The result of a job enqueued through the public interface, once it finished."""
    assert enqueued is not None, "the job id was already taken"
    return await res.enqueuer.job(enqueued.job_id, queue).result(timeout_s=timeout_s, poll_delay=0.02)


async def outcome(res: Resources, job_id: str, queue: str, timeout_s: float = 30.0) -> tuple[bool, Any]:
    """(succeeded, result) of a job once it has finished for good, whoever enqueued it."""
    job = res.enqueuer.job(job_id, queue)
    async with asyncio.timeout(timeout_s):
        while (info := await job.outcome()) is None:
            await asyncio.sleep(0.05)
    return info.success, info.result


async def recorded_runs(res: Resources) -> list[dict[str, Any]]:
    """Every run the test jobs have recorded, oldest first."""
    return [json.loads(r) for r in await res.redis.lrange(RUNS_KEY, 0, -1)]
