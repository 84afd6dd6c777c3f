"""Group commit (app/batching.py): callers of one loop turn share a write, later callers join the
next write while one is in flight, and a failed write fails exactly its own callers."""

from __future__ import annotations

import asyncio

import pytest

from app.batching import GroupCommit


async def test_callers_share_writes_and_get_their_own_answers() -> None:
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await release.wait()
        return [n * 10 for n in items]

    group = GroupCommit(write)
    first = [asyncio.create_task(group.submit(n)) for n in range(3)]
    await asyncio.sleep(0)  # the first write starts with the three of this loop turn
    await asyncio.sleep(0)
    later = [asyncio.create_task(group.submit(n)) for n in range(3, 6)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*first, *later) == [0, 10, 20, 30, 40, 50]
    assert writes == [[0, 1, 2], [3, 4, 5]]


async def test_a_failed_write_fails_its_callers_only_and_the_next_write_goes_on() -> None:
    async def write(items: list[str]) -> list[str]:
        if "bad" in items:
            raise ConnectionError("down")
        return items

    group = GroupCommit(write)
    failed = await asyncio.gather(group.submit("bad"), group.submit("ok"), return_exceptions=True)
    assert [type(f) for f in failed] == [ConnectionError, ConnectionError]
    assert await group.submit("again") == "again"


async def test_a_write_answering_the_wrong_count_is_an_error_not_a_mismatch() -> None:
    async def write(items: list[int]) -> list[int]:
        return items[:1]

    group = GroupCommit(write)
    with pytest.raises(RuntimeError, match="answered 1 of 2"):
        await asyncio.gather(group.submit(1), group.submit(2))
