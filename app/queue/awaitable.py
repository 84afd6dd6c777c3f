"""`awaited()`: await a redis-py command whose stubs say `Awaitable[T] | T`.

redis-py types its command mixins for both the sync and the asyncio client, so hash and set
commands return `Awaitable[T] | T`; on our asyncio client the value is always awaitable.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def awaited(value: Awaitable[T] | T) -> T:
    if inspect.isawaitable(value):
        return await value
    return value  # only a synchronous client gets here, and we never pass one
