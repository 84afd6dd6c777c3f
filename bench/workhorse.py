"""The real Workhorse worker (`python -m app`) as the benchmarks run it, plus its enqueuer."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from app.config import PROJECT_ROOT, Settings
from app.jobs import build_registry
from app.queue.connections import connect_redis
from app.queue.enqueue import Enqueuer
from bench.env import BenchEnv, clean_environ
from bench.redis_server import free_port

THROUGHPUT_QUEUE = "intake-routing"
_LAG_RE = re.compile(rb"^workhorse_event_loop_lag_max_seconds (\S+)$", re.MULTILINE)


class Worker:
    """One `python -m app` subprocess, its sidecar port and its log file."""

    def __init__(self, env: BenchEnv, queues: list[str] | None, extra: dict[str, str]) -> None:
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="wh-bench-"))
        self.log_path = self.home / "worker.log"
        self.env = clean_environ({
            "REDIS_URL": env.redis_url, "DATABASE_URL": env.database_url, "HEALTH_PORT": str(self.port),
            "WORKHORSE_HOME": str(self.home), "STORAGE_DIR": str(self.home / "storage"),
            "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", **extra,
        })
        self.args = ["--queues", ",".join(queues)] if queues else []
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", *self.args, env=self.env, cwd=PROJECT_ROOT,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Until /health/ready answers 200 (Redis, PostgreSQL and every worker are up)."""
        async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/health/ready") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)

    async def loop_lag_max_s(self) -> float:
        """The worst event-loop lag the process has seen (its /metrics gauge)."""
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/metrics") as r:
            found = _LAG_RE.search(await r.read())
        return float(found.group(1)) if found else float("nan")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@asynccontextmanager
async def running(env: BenchEnv, queues: list[str] | None = None, **extra: str) -> AsyncIterator[Worker]:
    worker = Worker(env, queues, extra)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@asynccontextmanager
async def enqueuer(env: BenchEnv) -> AsyncIterator[Enqueuer]:
    """The production enqueuer (bulk Lua + wake-up publish) against the bench Redis."""
    settings = Settings.load({"REDIS_URL": env.redis_url, "DATABASE_URL": env.database_url})
    redis = connect_redis(env.redis_url)
    try:
        yield Enqueuer(redis, build_registry(settings))
    finally:
        await redis.aclose(close_connection_pool=True)
