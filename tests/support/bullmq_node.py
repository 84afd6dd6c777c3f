"""The web app's BullMQ producer, as it runs: the real bullmq npm client under Node, installed from
tests/node/package-lock.json on first use (`npm ci`, in CI too), driven through tests/node/driver.mjs
in a subprocess with JSON lines, like the arq client (tests/support/arq_client.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.support.node import NODE_DIR, install
from tests.support.system import require_binary

DRIVER = NODE_DIR / "driver.mjs"


def node_binary() -> str:
    """The node binary, once tests/node/node_modules holds what package-lock.json pins."""
    install()
    return require_binary("node")


class BullmqNode:
    """One running driver: `await node.call(op, **fields)` -> its JSON answer."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def call(self, op: str, timeout_s: float = 60, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        seq = next(self._seq)
        future = self._waiting[seq] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write(json.dumps({"seq": seq, "op": op, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout_s):
            answer: dict[str, Any] = await future
        if "error" in answer:
            raise AssertionError(f"bullmq client: {op} failed: {answer['error']}")
        return answer

    async def add(self, queue: str, name: str, data: Any, **opts: Any) -> str:
        """`queue.add(name, data, opts)`: the id BullMQ gave the job."""
        return str((await self.call("add", queue=queue, name=name, data=data, opts=opts))["id"])

    async def wait(self, queue: str, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """`job.waitUntilFinished(queueEvents)`: {"resolved": value} or {"rejected": message}."""
        return await self.call("wait", timeout_s=timeout_s + 5, queue=queue, id=job_id, timeoutMs=int(timeout_s * 1000))

    async def state(self, queue: str, job_id: str) -> dict[str, Any]:
        return await self.call("state", queue=queue, id=job_id)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            answer = json.loads(line)
            future = self._waiting.pop(answer.pop("seq"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(AssertionError("the bullmq driver exited"))


@asynccontextmanager
async def bullmq_node(redis_url: str, prefix: str = "bull") -> AsyncIterator[BullmqNode]:
    node = await asyncio.to_thread(node_binary)
    proc = await asyncio.create_subprocess_exec(node, str(DRIVER), redis_url, prefix, cwd=NODE_DIR,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        ready = await proc.stdout.readline()
    if not ready:
        raise AssertionError("the bullmq driver did not start")
    client = BullmqNode(proc)
    try:
        yield client
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        client._reader.cancel()
        await asyncio.gather(client._reader, return_exceptions=True)
