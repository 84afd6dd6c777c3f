"""outbox.put(), how our own jobs write to the outbox: validated first, all or nothing, in the
caller's transaction."""

from __future__ import annotations

import datetime as dt

import pytest

from app.errors import InvalidPayload
from app.jobs.resources import Resources
from app.notify.payloads import SendEmail
from app.queue import keys, outbox
from app.queue.enqueue import JobRequest
from app.queue.outbox import OutboxRelay
from tests.support.outbox import QUEUE


async def test_put_writes_validated_jobs_in_the_callers_transaction(res: Resources) -> None:
    """outbox.put() (how our own jobs write to the outbox) validates first, all or nothing, and
    writes in the caller's transaction: a rollback takes the rows with it."""
    email = SendEmail(idempotency_key="k1", to="amy@example.com", subject="Hi", text="Hello")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    async with res.db.acquire() as conn:
        with pytest.raises(InvalidPayload, match="tag"):
            async with conn.transaction():
                await outbox.put(conn, res.registry, [JobRequest.of(email), JobRequest("probe", {}, queue=QUEUE)])
        async with conn.transaction():
            ids = await outbox.put(conn, res.registry, [JobRequest.of(email, job_id="e-1"),
                                                        JobRequest("probe", {"tag": "p"}, queue=QUEUE, run_at=later)])
    written = await res.db.fetch("SELECT job_name, payload, queue, job_id, run_at FROM job_outbox ORDER BY id")
    assert [(r["job_name"], r["queue"], r["job_id"], r["run_at"]) for r in written] == [
        ("send_email", None, "e-1", None), ("probe", QUEUE, None, later)]
    assert written[0]["payload"]["idempotencyKey"] == "k1"
    await OutboxRelay(res).dispatch_batch()
    assert await res.redis.zscore(QUEUE, f"outbox:{max(ids)}") == int(later.timestamp() * 1000)
    assert await res.redis.exists(keys.JOB_PREFIX + "e-1")
