"""A private `redis-server` (the machine's binary, no persistence) for figures that count Redis
commands: other clients of a shared Redis would count too."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _answers(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.ping()
    finally:
        await redis.aclose()


@asynccontextmanager
async def private_redis(*extra_args: str) -> AsyncIterator[str]:
    """Its URL (DB 0), until the block ends; then the server and its directory are gone.
    `extra_args` go to redis-server (`--rename-command CONFIG ""`, say)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wh-bench-redis-")
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir,
        *extra_args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(RedisError, OSError):
                    await _answers(url)
                    break
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


