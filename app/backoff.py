"""The one backoff: exponential delays with a cap and jitter, and a loop that retries a
connection until a deadline. Redis start-up, the PostgreSQL pool, the wake listener, the worker's
Redis trouble and the retry policy of jobs all use it, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float
    """The first delay."""
    factor: float = 2.0
    cap_s: float = 5.0
    jitter: float = 0.0
    """± fraction of each delay, so many processes do not retry in step."""

    def delay_s(self, attempt: int, *, rand: float | None = None) -> float:
        """The delay after failed attempt `attempt` (1-based); `rand` in [0, 1) places the jitter."""
        raw = min(self.initial_s * self.factor ** max(attempt - 1, 0), self.cap_s)
        r = random.random() if rand is None else rand
        return max(0.0, raw * (1 + self.jitter * (2 * r - 1)))


CONNECT_BACKOFF = Backoff(initial_s=0.2, factor=2.0, cap_s=5.0, jitter=0.1)
"""Reconnecting to Redis or PostgreSQL: quick at first, then every ~5 s."""

REDIS_OUTAGE_BACKOFF = Backoff(initial_s=0.1, factor=2.0, cap_s=5.0, jitter=0.1)
"""A worker that lost Redis looks again soon: jobs waiting on it (or a finished job's outcome
held for it) are the cost of a slow retry."""


class Deadline(Exception):
    """`retry_until` gave up: the last failure is the cause."""


async def retry_until(
    attempt: Callable[[], Awaitable[T]], *, backoff: Backoff, timeout_s: float,
    retry_on: tuple[type[BaseException], ...], on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """`attempt()` until it succeeds; failures in `retry_on` wait per `backoff`, and one that
    would wait past `timeout_s` raises Deadline from the failure."""
    deadline = time.monotonic() + timeout_s
    n = 0
    while True:
        n += 1
        try:
            return await attempt()
        except retry_on as exc:
            delay = backoff.delay_s(n)
            if time.monotonic() + delay > deadline:
                raise Deadline(str(exc)) from exc
            if on_retry is not None:
                on_retry(exc, delay)
            await asyncio.sleep(delay)
