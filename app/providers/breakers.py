"""Circuit breakers, one per external provider, so a provider that is down stops costing retries.

closed --(N consecutive failures)--> open --(reset timeout)--> half-open
half-open --(success)--> closed;  half-open --(failure)--> open again

Kept small and in-process (each worker process learns on its own, like pybreaker or
Polly); no maintained asyncio breaker library fits the "defer, don't fail" rule we need: an
open breaker raises CircuitOpen, which the registry turns into a deferral that uses no attempt.
Only transient failures count: a 4xx says the request was bad, not that the provider is down.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog

from app.errors import CircuitOpen, PermanentError

log = structlog.get_logger(__name__)

PROVIDERS = ("openai", "smtp", "twilio", "google", "webhook", "storage")


class State(enum.IntEnum):
    """Values are the workhorse_circuit_breaker_state gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Breaker:
    provider: str
    failure_threshold: int = 5
    reset_timeout_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str, State], None] | None = None
    failures: int = 0
    opened_at: float | None = None
    _probing: bool = field(default=False, repr=False)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return State.CLOSED
        if self.clock() - self.opened_at >= self.reset_timeout_s:
            return State.HALF_OPEN
        return State.OPEN

    def retry_after_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_timeout_s - (self.clock() - self.opened_at))

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now (closed, or the one half-open probe)."""
        state = self.state
        if state is State.OPEN:
            raise CircuitOpen(self.provider, self.retry_after_s())
        if state is State.HALF_OPEN:
            if self._probing:
                # One probe at a time; the others wait a little and look again.
                raise CircuitOpen(self.provider, min(5.0, self.reset_timeout_s))
            self._probing = True
            self._notify(State.HALF_OPEN)

    def release(self) -> None:
        """A call that before_call let through did not go out after all: free the probe slot."""
        self._probing = False

    def record_success(self) -> None:
        was_open = self.opened_at is not None
        self.failures, self.opened_at, self._probing = 0, None, False
        if was_open:
            log.info("circuit_closed", provider=self.provider)
            self._notify(State.CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.failure_threshold:
            if self.opened_at is None or self._probing:
                log.warning("circuit_opened", provider=self.provider, failures=self.failures)
            self.opened_at, self._probing = self.clock(), False
            self._notify(State.OPEN)

    def _notify(self, state: State) -> None:
        if self.on_change is not None:
            self.on_change(self.provider, state)


class Breakers:
    """The breakers of one process, by provider name."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 60.0,
        providers: Iterable[str] = PROVIDERS,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, State], None] | None = None,
    ) -> None:
        self._breakers = {
            p: Breaker(p, failure_threshold, reset_timeout_s, clock=clock, on_change=on_change)
            for p in providers
        }

    def __getitem__(self, provider: str) -> Breaker:
        return self._breakers[provider]

    def states(self) -> dict[str, State]:
        return {name: b.state for name, b in self._breakers.items()}

    @asynccontextmanager
    async def guard(self, provider: str) -> AsyncIterator[None]:
        """Run the block as one call to `provider`, counted by its breaker."""
        self._breakers[provider].before_call()
        async with self.outcome(provider):
            yield

    @asynccontextmanager
    async def outcome(self, provider: str) -> AsyncIterator[None]:
        """Count the block's outcome for a call already let through by `before_call()`."""
        breaker = self._breakers[provider]
        try:
            yield
        except PermanentError:
            # The provider answered; the request was at fault. It still proves the provider is up.
            breaker.record_success()
            raise
        except BaseException:
            breaker.record_failure()
            raise
        else:
            breaker.record_success()
