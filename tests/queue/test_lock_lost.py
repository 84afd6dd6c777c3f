"""A worker that stalls past its liveness (SIGSTOP, as a paused VM or a long GC would) loses its
running job to another process; when it resumes, its next heartbeat finds the lock held by
the other process and stops running the job there, writing nothing: the job's side effects
stop with it, instead of running on to a finish that would only be fenced."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.runtime.startup import open_resources
from tests.support.effects import CREATE_TABLE, HOST_VARIABLE
from tests.support.services import free_port
from tests.support.worker import WorkerProcess, subprocess_env

EnvFactory = Callable[..., dict[str, str]]


async def _start(env: dict[str, str], host: str) -> WorkerProcess:
    own = {HOST_VARIABLE: host, "HEALTH_PORT": str(free_port())}
    worker = WorkerProcess(subprocess_env({**env, **own}), ("--queues", "sla-monitor"))
    await worker.start()
    await worker.wait_ready()
    return worker


async def _ran_on(res: Resources, job_id: str, host: str) -> None:
    async with asyncio.timeout(30):
        while not await res.db.fetchval("SELECT count(*) FROM test_effect_runs WHERE job_id = $1 AND host = $2",
                                        job_id, host):
            await asyncio.sleep(0.05)


async def test_a_resumed_worker_stops_the_job_another_process_took_over(make_env: EnvFactory) -> None:
    env = make_env(workhorse_extra_jobs="tests.support.effects", process_liveness_ttl_s=2)
    settings = Settings.load(env)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        await res.db.execute(CREATE_TABLE)
        await _stalled_worker_loses_its_job(env, res)


async def _stalled_worker_loses_its_job(env: dict[str, str], res: Resources) -> None:
    a = await _start(env, "a")
    b: WorkerProcess | None = None
    try:
        queued = await res.enqueuer.enqueue("effect", {"tag": "stalled", "workMs": 10_000}, queue="sla-monitor")
        assert queued is not None
        await _ran_on(res, queued.job_id, "a")
        b = await _start(env, "b")
        a.signal(signal.SIGSTOP)
        try:
            await _ran_on(res, queued.job_id, "b")
        finally:
            a.signal(signal.SIGCONT)
        lost = await a.wait_for_event("job_lock_lost", job_id=queued.job_id, timeout_s=20)
        assert lost["level"] == "warning"
        outcome = await res.enqueuer.job(queued.job_id, "sla-monitor").wait(timeout_s=30)
        assert outcome.success and outcome.result["host"] == "b"
        assert not [e for e in a.events("job_completed") if e.get("job_id") == queued.job_id]
        assert not a.events("job_outcome_fenced"), "a run stopped on a lost lock writes nothing to fence"
    finally:
        assert await a.stop() == 0
        if b is not None:
            assert await b.stop() == 0
