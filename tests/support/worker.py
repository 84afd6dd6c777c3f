"""Run the real worker: in this test's event loop (InProcessWorker) or as a subprocess
(WorkerProcess, `python -m app`), and wait for what it logs instead of sleeping; and run the
operator's commands (`workhorse`, `python -m app.trigger`) to completion."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT, Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.runtime.process import Process
from app.runtime.startup import open_resources


@asynccontextmanager
async def in_process_worker(settings: Settings, queues: list[str] | None = None) -> AsyncIterator[Process]:
    """The real Process (all of it but the signal handlers' source) in this event loop."""
    registry = build_registry(settings)
    async with open_resources(settings, registry, start_embedded=False, apply_migrations=True) as res:
        process = Process(res, queues or list(settings.queues.queues))
        task = asyncio.create_task(process.run())
        try:
            async with asyncio.timeout(15):
                await process.engine.hub.connected.wait()
                while len(process.engine.workers) < len(process.queue_names) or not all(
                        w.loop_task is not None for w in process.engine.workers):
                    await asyncio.sleep(0.01)
            yield process
        finally:
            process.request_stop()
            await task


class WorkerProcess:
    """`python -m app` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, env: Mapping[str, str], args: tuple[str, ...] = (), launcher: Sequence[str] = (), *,
                 root: Path = PROJECT_ROOT, python: str = sys.executable) -> None:
        self.env = dict(env)
        self.args = args
        self.launcher = tuple(launcher)
        """A command that execs the worker given after it (tests/support/confine.py), if any."""
        self.root, self.python = root, python
        """The checkout it runs from (another release's, for a deploy drill) and its interpreter."""
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        command = (*self.launcher, self.python, "-m", "app", *self.args)
        self.proc = await asyncio.create_subprocess_exec(
            *command, env=self.env, cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a group of its own, so a kill -9 takes its OCR processes too
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            text = raw.decode(errors="replace").rstrip()
            async with self._changed:
                self.raw.append(text)
                with contextlib.suppress(json.JSONDecodeError):
                    self.lines.append(json.loads(text))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    async def wait_for_event(
        self, name: str, *, count: int = 1, timeout_s: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        """The `count`-th log line with event `name` (and the given fields)."""
        def matches() -> list[dict[str, Any]]:
            return [e for e in self.events(name) if all(e.get(k) == v for k, v in fields.items())]

        async with asyncio.timeout(timeout_s), self._changed:
            while len(matches()) < count:
                if self.proc is not None and self.proc.returncode is not None and self._reader and self._reader.done():
                    raise AssertionError(f"worker exited before {name!r}:\n" + "\n".join(self.raw[-30:]))
                await self._changed.wait()
            return matches()[count - 1]

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        await self.wait_for_event("worker_started", timeout_s=timeout_s)

    def signal(self, sig: int) -> None:
        """SIGKILL goes to the whole process group, as systemd's KillMode and a container's death
        deliver it (the OCR pool's processes would otherwise outlive the worker); anything else
        to the worker alone."""
        assert self.proc is not None
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    async def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return code

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is not None:
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        try:
            return await self.wait(60)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait(10)


def subprocess_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "WORKHORSE_"))}
    env.update(settings_env)
    env["LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def wait_for_runs(
    res: Resources, tag: str, event: str, count: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Wait until the probe job `tag` has recorded `count` runs of `event`."""
    from tests.support.jobs import RUNS_KEY

    async with asyncio.timeout(timeout_s):
        while True:
            runs = [json.loads(r) for r in await res.redis.lrange(RUNS_KEY, 0, -1)]
            mine = [r for r in runs if r["tag"] == tag and r["event"] == event]
            if len(mine) >= count:
                return mine
            await asyncio.sleep(0.02)


async def start_worker(env: Mapping[str, str], *args: str) -> WorkerProcess:
    """`python -m app` with `env` (made a subprocess environment), once it has logged that it started."""
    worker = WorkerProcess(subprocess_env(env), args)
    await worker.start()
    await worker.wait_ready()
    return worker


async def run_command(env: Mapping[str, str], module: str, *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """`python -m MODULE ARGS` (app, app.cli, app.trigger) to completion: exit code, stdout, stderr
    (bytes that are not UTF-8 replaced, so a command that prints them fails on what it printed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, env=subprocess_env(env), cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(timeout_s):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def cli(env: Mapping[str, str], *args: str) -> tuple[int, str]:
    """`workhorse ARGS` (python -m app.cli) to completion: exit code, and stdout and stderr joined."""
    code, out, err = await run_command(env, "app.cli", *args)
    return code, out + err


def one_error_line(err: str) -> str:
    """The one line a failed command wrote besides JSON log lines; fails if there are more."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, lines
    return lines[0]


class NotifySocket:
    """The NOTIFY_SOCKET a supervisor listens on, read as datagrams come: a worker sending to a
    socket nobody reads blocks once net.unix.max_dgram_qlen of them wait (10 without systemd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.heard: list[str] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.setblocking(False)
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NotifySocket:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._socket.close()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = (await loop.sock_recv(self._socket, 4096)).decode()
            async with self._changed:
                self.heard.append(message)
                self._changed.notify_all()

    async def wait_for(self, message: str, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: message in self.heard)
