"""The embedded default: with no REDIS_URL / DATABASE_URL the worker starts Redis and PostgreSQL
from wheels, and commands in another terminal find them instead of starting their own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from app.runtime.embedded import Embedded
from app.settings import PROJECT_ROOT
from tests.support.http import wait_for_status
from tests.support.services import free_port
from tests.support.worker import WorkerProcess, subprocess_env


async def test_worker_starts_the_embedded_default_and_the_trigger_finds_it(tmp_path: Path) -> None:
    """`python -m app` with nothing configured serves on embedded servers kept under
    WORKHORSE_HOME; `python -m app.trigger` from the same checkout uses them; both go on exit."""
    home = tmp_path / "wh"
    port = free_port()
    env = subprocess_env({"WORKHORSE_HOME": str(home), "HEALTH_PORT": str(port)})
    worker = WorkerProcess(env)
    await worker.start()
    try:
        await worker.wait_ready(timeout_s=90)
        await wait_for_status(port, "/health/ready", 200)
        discovered = json.loads((home / "embedded.json").read_text())
        assert discovered["redis_url"].startswith("unix://") and "host=" in discovered["database_url"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.trigger", "ping", "--queue", "scheduling-agent", "--wait", "--timeout", "30",
            env=env, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert '"pong": true' in out.decode()
        assert json.loads((home / "embedded.json").read_text())["pid"] == discovered["pid"]
    finally:
        assert await worker.stop() == 0
    assert not (home / "embedded.json").exists()
    assert not (home / "redis" / "redis.sock").exists()


async def test_embedded_postgres_stops_even_after_a_user_was_killed(tmp_path: Path) -> None:
    """pgserver keeps the pid of every process using its server and stops it after the last one;
    the pid of a process killed -9 stays on that list. Starting again forgets such pids, so the
    server still stops with the process that started it."""
    home = tmp_path / "wh"
    home.mkdir()
    first = Embedded(home)
    await asyncio.to_thread(first.start_postgres)
    await asyncio.to_thread(first.stop)
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    (home / "pg" / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    second = Embedded(home)
    await asyncio.to_thread(second.start_postgres)
    assert (home / "pg" / "postmaster.pid").exists()
    await asyncio.to_thread(second.stop)
    assert not (home / "pg" / "postmaster.pid").exists()
