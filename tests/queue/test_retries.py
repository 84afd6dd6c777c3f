"""The retry policy as a table: what each kind of failure leads to."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions

from app.config import RetryPolicy
from app.errors import CircuitOpen, InvalidPayload, NotFound, PermanentError, RateLimited, TransientError
from app.queue.retries import MIN_RATE_LIMIT_DELAY_S, classify, decide

POLICY = RetryPolicy(attempts=3, base_delay_s=5, max_delay_s=600, jitter=0.0)


@pytest.mark.parametrize(
    ("error", "attempt", "retry_after_s", "uses_attempt", "reason"),
    [
        (TransientError("5xx"), 1, 5.0, True, "transient"),
        (TransientError("5xx"), 2, 10.0, True, "transient"),
        (TransientError("5xx"), 3, None, True, "attempts_exhausted"),
        (TimeoutError(), 1, 5.0, True, "transient"),
        (ConnectionError("reset"), 2, 10.0, True, "transient"),
        (RateLimited("429", retry_after_s=120), 1, 120.0, True, "transient"),
        (RateLimited("429"), 1, MIN_RATE_LIMIT_DELAY_S, True, "transient"),
        (CircuitOpen("smtp", 42.0), 3, 42.0, False, "circuit_open"),
        (PermanentError("400"), 1, None, True, "permanent"),
        (NotFound("no row"), 1, None, True, "permanent"),
        (InvalidPayload("job", {"orgId": "Field required"}), 1, None, True, "permanent"),
        (asyncpg.CannotConnectNowError("starting up"), 1, 5.0, True, "transient"),
        (asyncpg.exceptions.AdminShutdownError("terminating"), 1, 5.0, True, "transient"),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), 2, 10.0, True, "transient"),
        (redis.exceptions.ConnectionError("gone"), 1, 5.0, True, "transient"),
        (asyncpg.exceptions.UniqueViolationError("dup"), 1, 5.0, True, "unexpected"),
        (asyncpg.exceptions.CharacterNotInRepertoireError("NUL"), 1, None, True, "permanent"),
        (asyncpg.exceptions.InvalidTextRepresentationError("abc"), 1, None, True, "permanent"),
        (ZeroDivisionError(), 1, 5.0, True, "unexpected"),
        (KeyError("x"), 2, 10.0, True, "unexpected"),
        (MemoryError(), 1, 5.0, True, "unexpected"),
        (ValueError("bug"), 3, None, True, "attempts_exhausted"),
    ],
)
def test_decide(error: Exception, attempt: int, retry_after_s: float | None, uses_attempt: bool, reason: str) -> None:
    """Failures back off until the last attempt, unexpected ones included; only known-permanent
    ones (our PermanentError, PostgreSQL data errors) dead-letter at once."""
    decision = decide(error, attempt, POLICY, rand=0.5)
    assert decision.retry_after_s == retry_after_s
    assert decision.uses_attempt is uses_attempt
    assert decision.reason == reason


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    """Delays double from the base, stop at the cap, and jitter stays within ±jitter."""
    policy = RetryPolicy(attempts=10, base_delay_s=5, max_delay_s=30, jitter=0.2)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [5, 10, 20, 30, 30]
    assert policy.backoff_s(1, rand=0.0) == pytest.approx(4.0)
    assert policy.backoff_s(1, rand=0.999999) == pytest.approx(6.0, rel=1e-4)


def test_error_classes_for_dead_letters() -> None:
    assert classify(NotFound("x")) == "NotFound"
    assert classify(TimeoutError()) == "Timeout"
    assert classify(ValueError()) == "bug"
