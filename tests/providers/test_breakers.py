"""Circuit breakers: closed -> open -> half-open -> closed, and jobs deferred while open."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.config import Settings
from app.errors import CircuitOpen, PermanentError, TransientError
from app.jobs.resources import Resources
from app.providers.breakers import Breakers, State
from tests.support.jobs import PROVIDER_DOWN_KEY
from tests.support.worker import in_process_worker, wait_for_runs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _fail(breakers: Breakers, error: Exception) -> None:
    with pytest.raises(type(error)):
        async with breakers.guard("smtp"):
            raise error


async def test_breaker_opens_after_threshold_and_recovers_through_half_open() -> None:
    """N transient failures open it; after the reset time one probe goes out; success closes it."""
    clock = Clock()
    changes: list[tuple[str, State]] = []
    breakers = Breakers(failure_threshold=3, reset_timeout_s=60, clock=clock,
                        on_change=lambda p, s: changes.append((p, s)))
    for _ in range(2):
        await _fail(breakers, TransientError("down"))
    assert breakers["smtp"].state is State.CLOSED
    await _fail(breakers, TransientError("down"))
    assert breakers["smtp"].state is State.OPEN  # type: ignore[comparison-overlap]  # state is a property
    with pytest.raises(CircuitOpen) as opened:
        async with breakers.guard("smtp"):
            pass
    assert opened.value.retry_after_s == 60
    clock.now += 60
    assert breakers["smtp"].state is State.HALF_OPEN
    async with breakers.guard("smtp"):
        # While the probe is out, other calls still wait.
        with pytest.raises(CircuitOpen):
            async with breakers.guard("smtp"):
                pass
    assert breakers["smtp"].state is State.CLOSED
    assert changes[-1] == ("smtp", State.CLOSED)


async def test_a_probe_slot_that_was_not_used_is_released() -> None:
    """A half-open probe let through but not sent (say, the message was already sent) frees the
    slot, so the next call probes instead of the breaker waiting half-open forever."""
    clock = Clock()
    breakers = Breakers(failure_threshold=1, reset_timeout_s=10, clock=clock)
    await _fail(breakers, TransientError("down"))
    clock.now += 10
    breaker = breakers["smtp"]
    breaker.before_call()
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    breaker.release()
    async with breakers.guard("smtp"):
        pass
    assert breaker.state is State.CLOSED


async def test_failed_probe_reopens_and_permanent_errors_do_not_count() -> None:
    """A failing half-open probe opens the breaker again; 4xx-like errors prove the provider is up."""
    clock = Clock()
    breakers = Breakers(failure_threshold=2, reset_timeout_s=10, clock=clock)
    for _ in range(5):
        await _fail(breakers, PermanentError("400"))
    assert breakers["smtp"].state is State.CLOSED
    await _fail(breakers, TransientError("down"))
    await _fail(breakers, TransientError("down"))
    clock.now += 10
    await _fail(breakers, TransientError("still down"))
    assert breakers["smtp"].state is State.OPEN  # type: ignore[comparison-overlap]  # state is a property
    assert breakers["smtp"].retry_after_s() == 10


async def test_open_breaker_defers_jobs_without_using_attempts(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """With the provider down the breaker opens; later jobs are deferred, not failed, and all
    complete once it is back — none dead-lettered, none past its first attempt's count."""
    settings = make_settings(breaker_failure_threshold=2, breaker_reset_timeout_s=1,
                             intake_routing_base_delay_s=0.2, intake_routing_attempts=2)
    await res.redis.set(PROVIDER_DOWN_KEY, "1")
    async with in_process_worker(settings, ["intake-routing"]) as process:
        for n in range(2):
            await res.enqueuer.enqueue("call_provider", {"tag": f"first{n}"})
        await wait_for_runs(res, "first0", "fail", 1)
        await wait_for_runs(res, "first1", "fail", 1)
        assert process.res.breakers["storage"].state is State.OPEN
        for n in range(5):
            await res.enqueuer.enqueue("call_provider", {"tag": f"later{n}"})
        for n in range(5):
            # Each later job starts, meets the open breaker and is deferred before calling out.
            await wait_for_runs(res, f"later{n}", "start", 1)
        await res.redis.delete(PROVIDER_DOWN_KEY)
        for tag in [f"first{n}" for n in range(2)] + [f"later{n}" for n in range(5)]:
            await wait_for_runs(res, tag, "done", 1, timeout_s=20)
    assert await res.dlq.list() == []
    later_starts = [r for n in range(5) for r in await wait_for_runs(res, f"later{n}", "start", 2)]
    assert all(r["attempt"] == 1 for r in later_starts)
    later_fails = [r for n in range(5) for r in await wait_for_runs(res, f"later{n}", "fail", 0)]
    assert later_fails == []
