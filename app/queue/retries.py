"""The one retry policy: how long to wait before the next attempt, or whether to give up.

`decide()` is pure so the whole table of outcomes is tested without a worker; the registry is
the only caller, and jobs never choose their own backoff.

Only failures known to be permanent skip the retries: our PermanentError (invalid input, a
missing row, a 4xx) and PostgreSQL's data errors (class 22: the input itself is invalid).
Anything else retries within the queue's attempts, an unexpected exception included (as
BullMQ, Sidekiq and the runbooks do: out of memory or a bug that depends on timing may pass);
it is still classified "bug" in the dead letter and the metrics when the attempts run out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg
import redis.exceptions

from app.config.queue_table import RetryPolicy
from app.errors import CircuitOpen, PermanentError, RateLimited, TransientError


class RetryLater(Exception):  # a request to the runner, not an error
    """Raised by a job's wrapper (app/queue/execution.py) when the policy retries: the runner
    queues the job again `defer_s` from now (None: at once, at its old score)."""

    def __init__(self, defer_s: float | None) -> None:
        super().__init__(f"retry in {defer_s} s" if defer_s is not None else "retry at once")
        self.defer_s = defer_s


# A 429 without a usable Retry-After still waits this long: providers punish eager retries.
MIN_RATE_LIMIT_DELAY_S = 60.0

# Failures of our own infrastructure that pass: they retry like TransientError, so jobs need
# not wrap every query. PostgreSQL: connection lost or refused (class 08), server shutting down
# or starting (57P0x), deadlock and serialization failures (40xxx), too many connections.
INFRASTRUCTURE_TRANSIENT: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


# Failures that the same input will always meet again: PostgreSQL's class 22 (invalid text
# representation, NUL in text, numeric out of range ...).
KNOWN_PERMANENT: tuple[type[BaseException], ...] = (asyncpg.exceptions.DataError,)


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens after a failed attempt."""

    retry_after_s: float | None
    """Seconds until the next attempt, or None: dead-letter now."""
    uses_attempt: bool = True
    """False when the failure was not the job's (an open breaker): the attempt is given back."""
    reason: str = ""

    @property
    def dead_letter(self) -> bool:
        return self.retry_after_s is None


def classify(error: BaseException) -> str:
    """The error class stored with a dead letter and used as a metric label."""
    if isinstance(error, PermanentError | TransientError):
        return type(error).__name__
    if isinstance(error, TimeoutError):
        return "Timeout"
    if isinstance(error, INFRASTRUCTURE_TRANSIENT):
        return type(error).__name__
    return "bug"


def decide(error: BaseException, attempt: int, policy: RetryPolicy, *, rand: float | None = None) -> Decision:
    """Decide the outcome of failed attempt number `attempt` (1-based) under `policy`."""
    if isinstance(error, CircuitOpen):
        return Decision(error.retry_after_s, uses_attempt=False, reason="circuit_open")
    if isinstance(error, (PermanentError, *KNOWN_PERMANENT)):
        return Decision(None, reason="permanent")
    if attempt >= policy.attempts:
        return Decision(None, reason="attempts_exhausted")
    delay = policy.backoff_s(attempt, rand=random.random() if rand is None else rand)
    if isinstance(error, RateLimited):
        delay = max(delay, error.retry_after_s or 0.0, MIN_RATE_LIMIT_DELAY_S)
    expected = isinstance(error, (TransientError, *INFRASTRUCTURE_TRANSIENT))
    return Decision(delay, reason="transient" if expected else "unexpected")
