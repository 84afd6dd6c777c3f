"""Two worker hosts and a data host (Redis, PostgreSQL) in network namespaces on one bridge
(tests/support/netns.py): one worker host is cut off while it runs jobs, longer than its
liveness TTL, and then heals.

What must hold: the other host takes the jobs over once the partitioned host's liveness key
expires; the partitioned host's late finishes, written once it heals, are refused by the finish
script (fenced) and counted, never applied over the new owner's outcome; each job ends with one
outcome; the notification ledger keeps each email to one, though each job ran twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.runtime.startup import open_resources
from tests.fakes.smtp import SmtpSink
from tests.support.effects import CREATE_TABLE, HOST_VARIABLE
from tests.support.hosted import HostedServers
from tests.support.netns import NamespacesUnavailable, Network
from tests.support.waits import until
from tests.support.worker import WorkerProcess, subprocess_env

EnvFactory = Callable[..., dict[str, str]]
JOBS = 4
WORK_MS = 6000


@pytest.fixture
async def network() -> AsyncIterator[Network]:
    """Three hosts; where they cannot be made the test fails, naming why (it is never skipped)."""
    try:
        net = await asyncio.to_thread(Network, ["data", "a", "b"])
    except NamespacesUnavailable as exc:
        pytest.fail(f"the hosts of this test cannot be made here: {exc}")
    yield net
    await asyncio.to_thread(net.close)


async def _start(env: dict[str, str], net: Network, host: str) -> WorkerProcess:
    worker = WorkerProcess(subprocess_env({**env, HOST_VARIABLE: host}), ("--queues", "sla-monitor"),
                           launcher=net.hosts[host].command([]))
    await worker.start()
    await worker.wait_ready()
    return worker


async def _rows(res: Resources, host: str) -> int:
    """Jobs that host `host` has started (one row per run)."""
    return int(await res.db.fetchval("SELECT count(DISTINCT tag) FROM test_effect_runs WHERE host = $1", host))


async def test_a_partitioned_hosts_late_finishes_are_fenced_and_nothing_is_sent_twice(
        make_env: EnvFactory, network: Network) -> None:
    servers = HostedServers(network.hosts["data"])
    sink = SmtpSink(host=network.test_address)
    workers: list[WorkerProcess] = []
    try:
        await servers.start()
        await sink.start()
        env = make_env(redis_url=servers.redis_url, database_url=servers.database_url,
                       workhorse_extra_jobs="tests.support.effects", process_liveness_ttl_s=2,
                       sla_monitor_concurrency=JOBS, **{k.lower(): v for k, v in sink.env().items()})
        settings = Settings.load(env)
        async with open_resources(settings, build_registry(settings), start_embedded=False,
                                  apply_migrations=True) as res:
            await res.db.execute(CREATE_TABLE)
            workers.append(a := await _start(env, network, "a"))
            ids = []
            for n in range(JOBS):
                queued = await res.enqueuer.enqueue("effect", {"tag": f"t{n}", "email": f"p{n}@example.com",
                                                               "workMs": WORK_MS}, queue="sla-monitor")
                assert queued is not None
                ids.append(queued.job_id)
            started = time.monotonic()
            await sink.wait_for(lambda s: len(s.raw) >= JOBS)
            workers.append(await _start(env, network, "b"))

            network.partition("a")
            cut = time.monotonic()
            await until(lambda: _taken_over(res), timeout_s=30, every_s=0.05)
            takeover_s = time.monotonic() - cut
            # Heal only after host a's jobs have ended there: its finishes are late by then.
            await asyncio.sleep(max(0.0, started + WORK_MS / 1000 + 0.5 - time.monotonic()))
            network.heal("a")
            healed = time.monotonic()

            outcomes = [await res.enqueuer.job(i, "sla-monitor").wait(timeout_s=60, poll_delay=0.05) for i in ids]
            fenced = [await a.wait_for_event("job_outcome_fenced", job_id=i, timeout_s=60) for i in ids]
            fenced_s = time.monotonic() - healed
            rows = await res.db.fetch("SELECT tag, host FROM test_effect_runs ORDER BY tag, at")
        emails = [str(m["To"]) for m in sink.messages]
        print(f"\npartition of host a: its {JOBS} jobs taken over by b {takeover_s:.1f} s after the cut; "
              f"healed {healed - cut:.1f} s after it; {len(fenced)} late finishes fenced within {fenced_s:.1f} s "
              f"of healing; outcomes {len(outcomes)} (one each); emails {len(emails)} for {JOBS} jobs")

        assert all(o.success and o.result["host"] == "b" for o in outcomes), outcomes
        assert sorted(emails) == sorted(f"p{n}@example.com" for n in range(JOBS)), emails
        runs = {(r["tag"], r["host"]) for r in rows}
        assert runs == {(f"t{n}", h) for n in range(JOBS) for h in ("a", "b")}, rows
    finally:
        for worker in workers:
            assert await worker.stop() == 0
        await sink.stop()
        await asyncio.to_thread(servers.stop)


async def _taken_over(res: Resources) -> bool:
    return await _rows(res, "b") == JOBS
