"""Retries follow the backoff schedule; what cannot succeed lands in the dead-letter queue,
from where an operator can inspect, retry and purge it."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import keys
from tests.support.records import arq_record
from tests.support.waits import wait_for_dead_letters
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"


async def test_always_failing_job_follows_backoff_then_dead_letters(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A job that always fails transiently runs `attempts` times with exponential delays, then is
    dead-lettered with its class, message, traceback and attempt count."""
    settings = make_settings(intake_routing_base_delay_s=0.3, intake_routing_attempts=3)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "flaky", "failTimes": 99}, queue=QUEUE, job_id="flaky-1")
        await wait_for_dead_letters(res, 1)
    starts = await wait_for_runs(res, "flaky", "start", 3)
    assert [s["attempt"] for s in starts] == [1, 2, 3]
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(starts)]
    # base 0.3 s doubling, jitter ±10%, plus pickup overhead.
    assert 0.27 <= gaps[0] <= 0.5, gaps
    assert 0.54 <= gaps[1] <= 0.85, gaps
    [letter] = await res.dlq.list()
    assert (letter.job_id, letter.job_name, letter.queue, letter.attempts) == ("flaky-1", "probe", QUEUE, 3)
    assert letter.error_class == "TransientError" and "failed on purpose" in letter.error_message
    assert letter.traceback and "TransientError" in letter.traceback
    assert letter.payload == {"tag": "flaky", "failTimes": 99}


async def test_permanent_errors_and_bad_payloads_are_not_retried_but_bugs_are(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A missing row or a payload that does not validate goes straight to the DLQ; an unexpected
    exception (a bug) is retried within the attempts like any failure, then dead-lettered as a bug."""
    settings = make_settings(intake_routing_base_delay_s=0.05, intake_routing_attempts=3)
    bad = arq_record("route_intake", {"orgId": 7})
    await res.redis.psetex(keys.JOB_PREFIX + "bad-payload", 60_000, bad)
    await res.redis.zadd(QUEUE, {"bad-payload": 1})
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "gone", "failTimes": 9, "error": "permanent"}, queue=QUEUE)
        await res.enqueuer.enqueue("probe", {"tag": "bug", "failTimes": 9, "error": "bug"}, queue=QUEUE)
        await wait_for_dead_letters(res, 3)
    letters = {d.job_id if d.job_name == "route_intake" else d.payload["tag"]: d for d in await res.dlq.list()}
    assert letters["gone"].error_class == "NotFound" and letters["gone"].attempts == 1
    assert letters["bug"].error_class == "bug" and "ZeroDivisionError" in (letters["bug"].traceback or "")
    assert letters["bug"].attempts == 3 and len(await wait_for_runs(res, "bug", "start", 3)) == 3
    invalid = letters["bad-payload"]
    assert invalid.error_class == "InvalidPayload"
    assert "intakeRequestId: Field required" in invalid.error_message
    assert "orgId: Input should be a valid string" in invalid.error_message
    assert len(await wait_for_runs(res, "gone", "start", 1)) == 1


async def test_dead_letter_retry_of_a_fixed_job_succeeds(settings: Settings, res: Resources) -> None:
    """Retrying a dead letter enqueues the job again with a fresh attempt count; it succeeds."""
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "fixme", "failTimes": 1, "error": "permanent"}, queue=QUEUE,
                                   job_id="fixme-1")
        await wait_for_dead_letters(res, 1)
        [letter] = await res.dlq.list()
        assert await res.dlq.retry(letter.id, res.enqueuer) == "fixme-1"
        await wait_for_runs(res, "fixme", "done", 1)
    retried = await res.dlq.get(letter.id)
    assert retried.status == "RETRIED" and retried.retried_job_id == "fixme-1"
    assert await res.dlq.list() == []
    info = await res.enqueuer.job("fixme-1", QUEUE).outcome()
    assert info is not None and info.success and info.attempt == 1


async def test_job_timeout_is_retried_by_policy(make_settings: Callable[..., Settings], res: Resources) -> None:
    """A job past its queue's timeout is cancelled and retried like any transient failure."""
    settings = make_settings(intake_routing_timeout_s=0.3, intake_routing_base_delay_s=0.1)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "slowpoke", "sleepMs": 2000}, queue=QUEUE)
        await wait_for_dead_letters(res, 1)
    [letter] = await res.dlq.list()
    assert letter.error_class == "Timeout" and letter.attempts == 3
