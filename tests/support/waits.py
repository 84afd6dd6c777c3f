"""Waiting for state that offers no event to await (a row in PostgreSQL, a key in Redis, bytes in
a socket's buffer): poll until it holds, bounded by a timeout, instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.jobs.resources import Resources

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], *, timeout_s: float = 10.0, every_s: float = 0.01) -> T:
    """The first truthy answer of `check()` (a query), asked every `every_s`; TimeoutError after
    `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not (found := await check()):
            await asyncio.sleep(every_s)
    return found


async def until_true(condition: Callable[[], T], *, timeout_s: float = 10.0, every_s: float = 0.01) -> T:
    """The first truthy value of `condition()`, which reads this process's own state (no I/O):
    the event loop runs in between, so what a server sent or a task did becomes visible."""
    async with asyncio.timeout(timeout_s):
        while not (found := condition()):
            await asyncio.sleep(every_s)
    return found


async def wait_for_dead_letters(res: Resources, count: int, timeout_s: float = 20.0) -> None:
    """Until the dead-letter store holds at least `count` letters."""
    async def enough() -> bool:
        return len(await res.dlq.list(limit=1000)) >= count

    await until(enough, timeout_s=timeout_s, every_s=0.05)
