"""The rolling deploy, rehearsed with two releases at once: `python -m drills.rolling_deploy`.

The deploy runbook's order, with producers never stopped (a load balancer in front of the two
releases' APIs, as the web app sees them):

    1. old alone        the previous release starts on an empty database (its own migrations)
    2. both             the current release starts beside it and applies its migrations while
                        the old one keeps working (they must be expand-only)
    3. new alone        the old release drains and stops (SIGTERM: running jobs finish)
    4. rollback, both   the old release starts again, on the current schema
    5. old alone        the current release drains and stops

Jobs are pings enqueued through both releases' HTTP APIs, each under an id of the drill's; a
refused enqueue goes to the other release, as a load balancer would send it, and is retried
until one acknowledges it. At the end every acknowledged job must have exactly one outcome and
have run once; jobs enqueued through either release must have run on both.

By default the previous release is the parent of the commit that added the newest migration
(so the drill crosses a schema change) and the drill makes a private Redis and PostgreSQL;
`--redis-url` (an empty database) and `--database-url` (a server where it may CREATE DATABASE)
point it elsewhere, e.g. at staging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from app.config import PROJECT_ROOT
from app.queue.connections import connect_redis
from app.queue.handles import JobHandle, JobOutcome
from drills.releases import Release, before_newest_migration, checked_out
from tests.support.services import free_port
from tests.support.worker import WorkerProcess, subprocess_env

QUEUE = "sla-monitor"
TOKEN = "drill-" + secrets.token_hex(8)


@dataclass
class Running:
    """One worker process of one release, and its API."""

    version: str
    worker: WorkerProcess
    port: int
    accepting: bool = True


@dataclass
class Report:
    previous: str
    current: str
    acknowledged: dict[str, str] = field(default_factory=dict)
    """Job id -> the release whose API acknowledged it."""
    ran: dict[str, list[str]] = field(default_factory=dict)
    """Job id -> the releases that ran it (from the workers' logs), once per run."""
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    migrations_by_current: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    @property
    def lost(self) -> list[str]:
        return sorted(j for j in self.acknowledged if j not in self.outcomes)

    @property
    def twice(self) -> list[str]:
        return sorted(j for j, runs in self.ran.items() if len(runs) > 1)

    def crossed(self, enqueued_by: str, run_by: str) -> int:
        return sum(1 for j, v in self.acknowledged.items() if v == enqueued_by and run_by in self.ran.get(j, []))

    def worst_pickup_ms(self) -> float:
        waits = [(o.started_at - o.enqueued_at).total_seconds() * 1000 for o in self.outcomes.values()
                 if o.started_at and o.enqueued_at]
        return max(waits, default=0.0)

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.twice and all(self.crossed(a, b) for a in ("old", "new")
                                                         for b in ("old", "new")))

    def render(self) -> str:
        by_api = Counter(self.acknowledged.values())
        by_worker = Counter(v for runs in self.ran.values() for v in runs)
        return "\n".join([
            f"previous release: {self.previous}; current: {self.current}",
            f"phases: {' -> '.join(self.phases)}",
            f"migrations applied by the current release while the previous one ran: "
            f"{', '.join(self.migrations_by_current) or 'none'}",
            f"jobs acknowledged: {len(self.acknowledged)} (through old {by_api['old']}, new {by_api['new']})",
            f"run by old: {by_worker['old']}, by new: {by_worker['new']}; enqueued through old and run by new: "
            f"{self.crossed('old', 'new')}, through new and run by old: {self.crossed('new', 'old')}",
            f"lost: {len(self.lost)}  run twice: {len(self.twice)}  worst pickup: {self.worst_pickup_ms():.0f} ms",
            "result: " + ("ok" if self.ok else "FAILED"),
        ])


class Drill:
    def __init__(self, previous: Release, redis_url: str, database_url: str, home: Path, *,
                 phase_s: float, rate: float) -> None:
        self.previous, self.redis_url, self.database_url, self.home = previous, redis_url, database_url, home
        self.phase_s, self.rate = phase_s, rate
        self.report = Report(previous.label, "this checkout")
        self.running: list[Running] = []
        self.finished: list[Running] = []
        self._ids = itertools.count()

    async def run(self) -> Report:
        async with aiohttp.ClientSession() as http:
            producing = asyncio.create_task(self._produce(http))
            try:
                await self._phase("old alone", start="old")
                before = await self._applied()
                await self._phase("both", start="new")
                self.report.migrations_by_current = [v for v in await self._applied() if v not in before]
                await self._phase("new alone", stop="old")
                await self._phase("rollback: both", start="old")
                await self._phase("old alone", stop="new")
            finally:
                producing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producing
            await self._wait_for_outcomes()
            for running in list(self.running):
                await self._stop(running)
        for running in self.finished:
            for event in running.worker.events("job_completed"):
                self.report.ran.setdefault(str(event.get("job_id")), []).append(running.version)
        return self.report

    async def _phase(self, name: str, *, start: str | None = None, stop: str | None = None) -> None:
        self.report.phases.append(name)
        if start:
            await self._start(start)
        if stop:
            await self._stop(next(r for r in self.running if r.version == stop))
        await asyncio.sleep(self.phase_s)

    async def _start(self, version: str) -> None:
        port = free_port()
        env = {"REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url, "API_TOKEN": TOKEN,
               "HEALTH_PORT": str(port), "WORKHORSE_HOME": str(self.home / version),
               "STORAGE_DIR": str(self.home / "storage"), "SHUTDOWN_TIMEOUT_MS": "10000"}
        release = self.previous if version == "old" else None
        worker = WorkerProcess(subprocess_env(env), ("--queues", QUEUE),
                               root=release.root if release else PROJECT_ROOT,
                               python=release.python if release else sys.executable)
        await worker.start()
        await worker.wait_ready()
        self.running.append(Running(version, worker, port))

    async def _stop(self, running: Running) -> None:
        """The runbook's drain: the load balancer stops sending to it, then SIGTERM (running jobs
        finish, nothing new is taken)."""
        running.accepting = False
        code = await running.worker.stop()
        if code != 0:
            raise RuntimeError(f"the {running.version} release exited {code} on SIGTERM")
        self.running.remove(running)
        self.finished.append(running)

    async def _produce(self, http: aiohttp.ClientSession) -> None:
        turn = itertools.count()
        while True:
            job_id = f"drill-{next(self._ids)}"
            for _ in itertools.count():  # until a release takes it, as the web app retries
                if await self._enqueue(http, job_id, next(turn)):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1 / self.rate)

    async def _enqueue(self, http: aiohttp.ClientSession, job_id: str, turn: int) -> bool:
        targets = [r for r in self.running if r.accepting]
        if not targets:
            return False
        first = turn % len(targets)  # round robin, then the others
        for running in targets[first:] + targets[:first]:
            body = {"name": "ping", "queue": QUEUE, "jobId": job_id, "payload": {"note": running.version}}
            try:
                async with http.post(f"http://127.0.0.1:{running.port}/api/v1/jobs", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"},
                                     timeout=aiohttp.ClientTimeout(total=5)) as reply:
                    if reply.status == 201:
                        self.report.acknowledged[job_id] = running.version
                        return True
            except (aiohttp.ClientError, TimeoutError):
                continue  # stopping or stopped: the other one takes it
        return False

    async def _applied(self) -> list[str]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        finally:
            await conn.close()

    async def _wait_for_outcomes(self, timeout_s: float = 60.0) -> None:
        redis = connect_redis(self.redis_url)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for job_id in [j for j in self.report.acknowledged if j not in self.report.outcomes]:
                    found = await JobHandle(redis, job_id, [QUEUE]).outcome()
                    if found is not None:
                        self.report.outcomes[job_id] = found
                if len(self.report.outcomes) == len(self.report.acknowledged):
                    return
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new database on `server_url`'s server for the drill, dropped afterwards."""
    name = f"workhorse_drill_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(server_url)
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def rehearse(previous_ref: str, redis_url: str, server_url: str, *, phase_s: float, rate: float) -> Report:
    with checked_out(previous_ref) as previous, tempfile.TemporaryDirectory(prefix="wh-drill-") as home:
        async with fresh_database(server_url) as database_url:
            return await Drill(previous, redis_url, database_url, Path(home), phase_s=phase_s, rate=rate).run()


@asynccontextmanager
async def private_servers() -> AsyncIterator[tuple[str, str]]:
    """A Redis and a PostgreSQL of the drill's own (the embedded distribution's binaries)."""
    from bench.redis_server import private_redis
    from tests.support.postgres import PrivatePostgres

    with tempfile.TemporaryDirectory(prefix="wh-drill-pg-") as directory:
        postgres = await asyncio.to_thread(PrivatePostgres, Path(directory))
        try:
            async with private_redis() as redis_url:
                yield redis_url, postgres.url
        finally:
            await asyncio.to_thread(postgres.cleanup)


async def main_async(args: argparse.Namespace) -> int:
    previous = args.previous or before_newest_migration()
    if args.redis_url and args.database_url:
        report = await rehearse(previous, args.redis_url, args.database_url, phase_s=args.phase_s, rate=args.rate)
    else:
        async with private_servers() as (redis_url, server_url):
            report = await rehearse(previous, redis_url, server_url, phase_s=args.phase_s, rate=args.rate)
    print(report.render())
    return 0 if report.ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m drills.rolling_deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", help="the previous release: a tag, commit or HEAD~1 "
                                           "(default: the parent of the commit that added the newest migration)")
    parser.add_argument("--phase-s", type=float, default=10.0, help="how long each phase lasts")
    parser.add_argument("--rate", type=float, default=50.0, help="jobs enqueued per second")
    parser.add_argument("--redis-url", help="an empty Redis database (default: a private redis-server)")
    parser.add_argument("--database-url", help="a PostgreSQL server where the drill may CREATE DATABASE")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
