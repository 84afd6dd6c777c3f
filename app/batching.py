"""Group commit: calls that arrive while a write is in flight go out together in the next one.

Many concurrent callers each waiting for their own round trip (a SENT mark per notification, a
claim per message) spend the time of the round trips, not of the work. A `GroupCommit` gives
each caller the answer of one shared write instead: the first call of a quiet moment is written
at the end of its loop turn (with whatever else arrived in that turn), and while that write is
in flight every new call joins the next. Nobody waits longer than one write they could not
have joined, and under load the writes grow instead of multiplying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Feeds `write` the items submitted together; each caller gets its item's answer, or the
    exception the write raised (every caller of a failed write gets it)."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_items: int = 1000) -> None:
        self._write = write
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False
        """A write is in flight or scheduled: new items wait for the next one."""
        self.writes = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._busy:
            self._busy = True
            # call_soon runs after the callbacks already scheduled: what else this loop turn
            # submits joins the write.
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        batch, self._pending = self._pending[:self.max_items], self._pending[self.max_items:]
        batch = [(item, f) for item, f in batch if not f.cancelled()]
        if not batch and not self._pending:
            self._busy = False
            return
        asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            if batch:
                answers = await self._write([item for item, _ in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"a group write answered {len(answers)} of {len(batch)} items")
                self.writes += 1
                self.items += len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            # What arrived meanwhile goes out now, as one write.
            self._start()
