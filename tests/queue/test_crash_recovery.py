"""Fault injection: killed processes, poison pills, PostgreSQL going away, cron across processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.cron import CronEntry
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue.enqueue import JobRequest
from app.queue.ticker import CronTicker
from app.runtime.startup import open_resources
from tests.fakes.smtp import SmtpSink
from tests.support.jobs import RUNS_KEY
from tests.support.postgres import PrivatePostgres
from tests.support.worker import in_process_worker, start_worker, wait_for_runs

QUEUE = "intake-routing"
EnvFactory = Callable[..., dict[str, str]]


async def test_job_of_a_killed_process_runs_again_within_the_lock_ttl(make_env: EnvFactory, res: Resources) -> None:
    """kill -9 mid-job: another process runs the job again once its short lock lapses — seconds,
    not the queue's 120 s timeout — and it completes."""
    env = make_env(job_lock_ttl_s=2, job_heartbeat_s=0.5, process_liveness_ttl_s=2)
    first = await start_worker(env)
    await res.enqueuer.enqueue("probe", {"tag": "victim", "sleepMs": 3000}, queue=QUEUE)
    await wait_for_runs(res, "victim", "start", 1)
    first.signal(signal.SIGKILL)
    await first.wait()
    killed_at = asyncio.get_running_loop().time()
    second = await start_worker(make_env(job_lock_ttl_s=2, job_heartbeat_s=0.5, process_liveness_ttl_s=2))
    try:
        starts = await wait_for_runs(res, "victim", "start", 2, timeout_s=20)
        recovered_after = asyncio.get_running_loop().time() - killed_at
        await wait_for_runs(res, "victim", "done", 1, timeout_s=20)
    finally:
        await second.stop()
    assert recovered_after < 8, recovered_after
    assert [s["attempt"] for s in starts] == [1, 2]


async def test_heartbeat_keeps_a_long_job_from_running_twice(make_env: EnvFactory, res: Resources) -> None:
    """A job running longer than the lock TTL keeps its lock alive: a second live process never
    starts it too."""
    env = dict(job_lock_ttl_s=1, job_heartbeat_s=0.3)
    a, b = await start_worker(make_env(**env)), await start_worker(make_env(**env))
    try:
        await res.enqueuer.enqueue("probe", {"tag": "long", "sleepMs": 3500}, queue=QUEUE)
        await wait_for_runs(res, "long", "done", 1, timeout_s=20)
    finally:
        await a.stop()
        await b.stop()
    assert len(await wait_for_runs(res, "long", "start", 1)) == 1


async def test_poison_pill_is_dead_lettered_after_repeated_crashes(make_env: EnvFactory, res: Resources) -> None:
    """A job that kills its process every time is dead-lettered after its crash recoveries
    instead of crashing the worker forever."""
    env = make_env(job_lock_ttl_s=1, job_heartbeat_s=0.3, process_liveness_ttl_s=1, intake_routing_attempts=1)
    await res.enqueuer.enqueue("probe", {"tag": "pill", "crash": True}, queue=QUEUE, job_id="pill")
    exits = []
    for _ in range(5):
        worker = await start_worker(env)
        try:
            async with asyncio.timeout(15):
                while worker.proc is not None and worker.proc.returncode is None and not await res.dlq.list():
                    await asyncio.sleep(0.05)
        finally:
            exits.append(await worker.stop())
        if await res.dlq.list():
            break
    [letter] = await res.dlq.list()
    assert letter.job_id == "pill" and "retries exceeded" in letter.error_message
    assert exits.count(-signal.SIGKILL) == 2 and exits[-1] == 0


async def test_jobs_needing_postgres_retry_until_it_returns(
        make_settings: Callable[..., Settings], res: Resources, tmp_path: Path) -> None:
    """PostgreSQL stopped mid-run: jobs that need it back off and succeed once it is back."""
    pg = await asyncio.to_thread(PrivatePostgres, tmp_path / "pg")
    try:
        settings = make_settings(database_url=pg.url, intake_routing_base_delay_s=0.5, intake_routing_attempts=10)
        async with in_process_worker(settings, [QUEUE]) as process:
            await process.res.enqueuer.enqueue("db_probe", {"tag": "before"})
            await wait_for_runs(res, "before", "done", 1)
            await asyncio.to_thread(pg.stop)
            for n in range(3):
                await process.res.enqueuer.enqueue("db_probe", {"tag": f"during{n}"})
            for n in range(3):
                await wait_for_runs(res, f"during{n}", "start", 2, timeout_s=20)
            await asyncio.to_thread(pg.start)
            for n in range(3):
                await wait_for_runs(res, f"during{n}", "done", 1, timeout_s=30)
            assert await process.res.dlq.list() == []
    finally:
        await asyncio.to_thread(pg.cleanup)


async def test_two_processes_fire_each_cron_tick_once(settings: Settings, res: Resources) -> None:
    """Two schedulers (two connections, as two processes) firing the same ticks enqueue each once;
    a tick whose previous run is still queued is skipped, not stacked."""
    entry = CronEntry("test-tick", "* * * * *", job="sla_scan")
    registry = build_registry(settings)
    async with open_resources(settings, registry, start_embedded=False) as other:
        tickers = [CronTicker(res, [entry]), CronTicker(other, [entry])]
        base = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
        outcomes = []
        for minute in range(5):
            tick = base + dt.timedelta(minutes=minute)
            outcomes += await asyncio.gather(*(t.fire(entry, tick) for t in tickers))
    assert outcomes.count("enqueued") == 1
    assert outcomes.count("skipped_overlap") == 4
    assert outcomes.count("claimed_elsewhere") == 5
    assert await res.redis.zcard("sla-monitor") == 1


async def test_kill_9_with_2000_jobs_queued_loses_none_and_sends_each_email_once(
        make_env: EnvFactory, res: Resources, smtp_sink: SmtpSink) -> None:
    """2,000 jobs on every queue, 100 of them emails. The process is killed -9 while jobs run,
    some emails delivered and others held mid-send by the SMTP server. A new process completes
    every job, and the SMTP server ends with exactly one message per email: those sent before
    the kill are not sent again, those cut off mid-send are sent once."""
    started = asyncio.get_running_loop().time()
    queues = ["document-processing", "document-embedding", "intake-routing", "calendar-sync",
              "sla-monitor", "scheduling-agent", "scheduling-reminders"]
    probes = [JobRequest("probe", {"tag": f"p{n}", "sleepMs": 20}, queue=queues[n % len(queues)])
              for n in range(1900)]
    emails = [JobRequest("send_email", {"idempotencyKey": f"crash-{n}", "to": f"r{n}@example.com",
                                        "subject": "Hello", "text": "once"}, job_id=f"crash-{n}")
              for n in range(100)]
    enqueued = await res.enqueuer.enqueue_many([*probes, *emails])
    assert all(enqueued)
    env = make_env(**smtp_sink.env(), job_lock_ttl_s=2, job_heartbeat_s=0.5, process_liveness_ttl_s=2)
    first = await start_worker(env)
    await smtp_sink.wait_for(lambda s: len(s.messages) >= 20)
    smtp_sink.gate.clear()  # later sends stop at MAIL FROM, before the server has the message
    # Kill once every send slot (the queue's concurrency) is held there: no send is then between
    # the server's acceptance and the SENT mark, the one window where a crash resends (ledger.py).
    await smtp_sink.wait_for(lambda s: s.held >= 5)
    first.signal(signal.SIGKILL)
    await first.wait()
    delivered_before_kill = len(smtp_sink.messages)
    smtp_sink.gate.set()
    second = await start_worker(env)
    try:
        await smtp_sink.wait_for(lambda s: len(s.messages) >= 100, timeout_s=60)
        async with asyncio.timeout(60):
            while len(await done_tags(res)) < len(probes):
                await asyncio.sleep(0.1)
        for e in emails:
            assert e.job_id is not None
            await res.enqueuer.job(e.job_id, "scheduling-reminders").result(timeout_s=30, poll_delay=0.05)
    finally:
        await second.stop()
    assert 20 <= delivered_before_kill < 100
    assert asyncio.get_running_loop().time() - started < 60
    recipients = [str(m["To"]) for m in smtp_sink.messages]
    assert sorted(recipients) == sorted(f"r{n}@example.com" for n in range(100))
    assert await done_tags(res) == {f"p{n}" for n in range(1900)}
    assert await res.dlq.list() == []


async def done_tags(res: Resources) -> set[str]:
    runs = [json.loads(r) for r in await res.redis.lrange(RUNS_KEY, 0, -1)]
    return {r["tag"] for r in runs if r["event"] == "done"}
