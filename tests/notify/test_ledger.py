"""The idempotency ledger against PostgreSQL when many sends claim and mark at once: their
statements are shared (app/batching.py), and every answer is still each key's own."""

from __future__ import annotations

import asyncio

import pytest

from app.jobs.resources import Resources
from app.notify.ledger import AlreadySent, Ledger


async def test_concurrent_claims_share_a_statement_and_each_key_is_claimed_once(res: Resources) -> None:
    """New keys, a key already SENT and a key repeated within one batch: each new key gets its
    own row, the SENT one is refused, and the repeat does not receive its twin's claim."""
    ledger = Ledger(res.db, stale_after_s=120)
    done = await ledger.claim("ledger:sent", "email", "a@example.com", None, "job-0")
    await ledger.sent(done.notification_id, "provider-0")

    keys = [f"ledger:{n}" for n in range(50)]
    answers = await asyncio.gather(
        *(ledger.claim(key, "email", f"{key}@example.com", "Hello", "job-1") for key in keys),
        ledger.claim("ledger:sent", "email", "a@example.com", None, "job-1"),
        ledger.claim("ledger:twin", "email", "t@example.com", None, "job-2"),
        ledger.claim("ledger:twin", "email", "t@example.com", None, "job-3"),
        return_exceptions=True)

    claims, refused, twins = answers[:50], answers[50], answers[51:]
    assert ledger.new_claims.writes < 10, "the claims did not share their statements"
    ids = [c.notification_id for c in claims if not isinstance(c, BaseException)]
    assert len(set(ids)) == 50
    assert isinstance(refused, AlreadySent) and refused.notification_id == done.notification_id
    # One twin holds the claim; the other finds it SENDING by another job, fresh: busy, retried later.
    assert sorted(type(t).__name__ for t in twins) == ["Claim", "TransientError"]
    rows = await res.db.fetch("SELECT idempotency_key, status, job_id FROM notifications"
                              " WHERE idempotency_key = ANY($1::text[])", keys)
    assert {(r["idempotency_key"], r["status"], r["job_id"]) for r in rows} == {(k, "SENDING", "job-1") for k in keys}


async def test_concurrent_sent_marks_share_a_statement_and_land_on_their_rows(res: Resources) -> None:
    ledger = Ledger(res.db, stale_after_s=120)
    claims = await asyncio.gather(*(ledger.claim(f"mark:{n}", "sms", "+1415555010", None, "job-1") for n in range(30)))
    writes_before = ledger.sent_marks.writes
    await asyncio.gather(*(ledger.sent(c.notification_id, f"SM{n}") for n, c in enumerate(claims)))
    assert ledger.sent_marks.writes - writes_before < 5
    rows = await res.db.fetch("SELECT id, status, provider_id FROM notifications WHERE idempotency_key LIKE 'mark:%'")
    by_id = {r["id"]: (r["status"], r["provider_id"]) for r in rows}
    assert by_id == {c.notification_id: ("SENT", f"SM{n}") for n, c in enumerate(claims)}
    with pytest.raises(AlreadySent):
        await ledger.claim("mark:0", "sms", "+1415555010", None, "job-2")
