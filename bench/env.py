"""Where the benchmarks run: the Redis DB, a PostgreSQL with pgvector, the peers' own installs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.config import PROJECT_ROOT
from app.runtime.embedded import Embedded
from bench import peer_envs
from bench.peer_envs import Peers
from bench.redis_server import private_redis
from bench.report import Row, render

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_HOME = PROJECT_ROOT / ".workhorse" / "bench"


@dataclass(frozen=True, slots=True)
class BenchEnv:
    redis_url: str
    redis_note: str
    database_url: str
    database_note: str
    peers: Peers


async def _has_pgvector(url: str) -> bool:
    """Our migrations create the `vector` extension; a server without it cannot run Workhorse."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return bool(found)
    finally:
        await conn.close()


@contextmanager
def _embedded_postgres() -> Iterator[str]:
    embedded = Embedded(BENCH_HOME)
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    try:
        yield embedded.start_postgres()
    finally:
        embedded.stop()


@asynccontextmanager
async def _redis() -> AsyncIterator[tuple[str, str]]:
    """BENCH_REDIS_URL when set, else a private redis-server: commands per job count every
    client of the server, so on a shared Redis other engineers' tests would count too."""
    configured = os.environ.get("BENCH_REDIS_URL")
    if configured:
        yield configured, f"Redis {configured} (BENCH_REDIS_URL; its other clients' commands count too)"
        return
    async with private_redis() as url:
        yield url, "Redis: a private redis-server (the machine's binary, no persistence)"


@asynccontextmanager
async def bench_env() -> AsyncIterator[BenchEnv]:
    """Redis (above); DATABASE_URL or the machine's PostgreSQL when it has pgvector, else the
    embedded pgserver (PostgreSQL 16 with pgvector)."""
    candidate = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    peers = await peer_envs.install()
    async with _redis() as (redis_url, redis_note):
        if await _has_pgvector(candidate):
            yield BenchEnv(redis_url, redis_note, candidate, "PostgreSQL from DATABASE_URL", peers)
            return
        with _embedded_postgres() as url:  # blocks while it starts; nothing else runs yet
            note = "embedded pgserver (the configured PostgreSQL has no pgvector)"
            yield BenchEnv(redis_url, redis_note, url, note, peers)


async def flush(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


async def command_counts(redis_url: str) -> dict[str, int]:
    """Calls per command name so far (`INFO commandstats`)."""
    redis = Redis.from_url(redis_url)
    try:
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def commands_processed(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        info = await redis.info("stats")
        return int(info["total_commands_processed"])
    finally:
        await redis.aclose()


def clean_environ(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without Workhorse settings, plus `extra`."""
    prefixes = ("REDIS_", "DATABASE_", "WORKHORSE_", "LOG_", "HEALTH_", "POLL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_json(argv: Sequence[str], env: Mapping[str, str], timeout_s: float = 600) -> dict[str, Any]:
    """Run a measuring script; its last stdout line is its JSON answer."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), cwd=PROJECT_ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{' '.join(argv[1:3])} took longer than {timeout_s:.0f}s") from None
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(argv[1:3])} failed ({proc.returncode}): {err.decode()[-2000:]}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def peer_argv(env: BenchEnv, script: str, *args: str) -> list[str]:
    """A peer script (a path under bench/peers/) on the interpreter of its own install."""
    return env.peers.argv(script, *args)


def peer_environ(env: BenchEnv) -> dict[str, str]:
    return clean_environ({"BENCH_REDIS_URL": env.redis_url, **env.peers.environ()})


async def peer_versions(env: BenchEnv) -> str:
    return await peer_envs.versions(env.peers)


def run_alone(run: Callable[[BenchEnv], Awaitable[list[Row]]], *notes: str) -> None:
    """`python -m bench.<family>`: one family's rows printed as the table, on the bench environment."""
    async def measure() -> None:
        async with bench_env() as env:
            rows = await run(env)
        print(render(rows, [f"database: {env.database_note}", *notes]))

    asyncio.run(measure())
