"""What a user of the embedded default sees in the process table, read without the app's own code:
the redis-servers, postmasters and guards of one WORKHORSE_HOME, and their exits awaited."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class HomeProcesses:
    redis: list[int]
    postgres: list[int]
    guards: list[int]

    @property
    def all(self) -> list[int]:
        return self.redis + self.postgres + self.guards


def processes_of(home: Path) -> HomeProcesses:
    """Live (not zombie) processes serving `home`: redis-server on its socket (as started, or under
    the title Redis gives itself), the postmaster of its data directory, its guard."""
    sock, pgdata = str(home / "redis" / "redis.sock"), str(home / "pg")
    found: dict[str, list[int]] = {"redis": [], "postgres": [], "guards": []}
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        args: list[str] = proc.info["cmdline"] or []
        line = f" {' '.join(args)} "
        if f" unixsocket:{sock} " in line or f" --unixsocket {sock} " in line:
            found["redis"].append(proc.pid)
        elif ["-D", pgdata] in [args[i:i + 2] for i in range(len(args))]:
            found["postgres"].append(proc.pid)
        elif args[-2:] == ["app.runtime.embedded_guard", str(home)]:
            found["guards"].append(proc.pid)
    return HomeProcesses(**found)


async def exited(pid: int) -> None:
    """Return once process `pid` has exited (zombies included: nobody may reap an orphan here).
    A pidfd becomes readable at the exit: an event for the loop, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def all_exited(pids: list[int], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(exited(pid) for pid in pids))


def starts(home: Path) -> tuple[int, int]:
    """How many redis-servers and postmasters have started on `home` (their logs say it first)."""
    redis_log, pg_log = home / "redis" / "redis.log", home / "pg" / "log"
    redis = redis_log.read_text().count("Redis is starting") if redis_log.exists() else 0
    pg = pg_log.read_text().count("starting PostgreSQL") if pg_log.exists() else 0
    return redis, pg


def guard_pids(home: Path) -> list[int]:
    """Every guard that `home` has had, from the guard's log."""
    path = home / "guard.log"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [line["pid"] for line in lines if line.get("event") == "embedded_guard_started"]
