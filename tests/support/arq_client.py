"""The real arq client, as its users run it: arq 0.28 in a virtual environment of its own
(created on first use, in CI too: arq pins redis-py < 6, so it cannot share the project's),
driven through tests/support/arq_driver.py in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT

ARQ_PACKAGES = ("arq==0.28.0", "redis[hiredis]>=5,<6")
ARQ_VENV = PROJECT_ROOT / ".arq-client-venv"
DRIVER = Path(__file__).with_name("arq_driver.py")


def arq_python() -> Path:
    """The arq client venv's interpreter, created (or brought to ARQ_PACKAGES) on first use."""
    python = ARQ_VENV / "bin" / "python"
    marker = ARQ_VENV / f".installed-{zlib.crc32(' '.join(ARQ_PACKAGES).encode()):08x}"
    if not marker.exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(ARQ_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *ARQ_PACKAGES], check=True)
        marker.touch()
    return python


class ArqClient:
    """One running driver: `await client.call(op, **fields)` -> its JSON answer."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._lock = asyncio.Lock()

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            await self.proc.stdin.drain()
            async with asyncio.timeout(60):
                line = await self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the arq driver exited ({await self._stderr()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"arq client: {op} failed: {answer['error']}")
        return answer

    async def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()[-2000:]


@asynccontextmanager
async def arq_client(redis_url: str, deserializer_file: Path | None = None) -> AsyncIterator[ArqClient]:
    python = await asyncio.to_thread(arq_python)
    # -I: the driver's own folder (tests/support, whose http.py would shadow the standard
    # library's) is not put on its import path.
    args = ["-I", str(DRIVER), redis_url, *([str(deserializer_file)] if deserializer_file else [])]
    proc = await asyncio.create_subprocess_exec(str(python), *args, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    client = ArqClient(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            ready = await proc.stdout.readline()
        if not ready:
            raise AssertionError(f"the arq driver did not start: {await client._stderr()}")
        yield client
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
