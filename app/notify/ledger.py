"""The idempotency ledger: a notifications row claimed before a send, so no key is sent twice.

A send first claims its key (status SENDING, naming the job), then calls the provider, then
marks the row SENT, FAILED or SKIPPED. The rules of a claim, given the row already there:

    no row                              claim it
    SENT                                refuse: already sent (the second send never happens)
    FAILED / SKIPPED                    claim it again (a retry, or a channel configured since)
    SENDING by this same job            the earlier run of this job died mid-send: claim it
                                        ("in doubt": see below)
    SENDING by another job, fresh       someone is sending right now: try again later
    SENDING by another job, stale       that sender is gone: claim it

In doubt: a process killed between the provider accepting a message and the SENT mark
leaves a row that cannot tell whether the message went out. We send again rather than risk a
person never hearing of their meeting; that window is the one round trip to PostgreSQL after
the provider's answer, and emails carry a Message-ID derived from the key so mail clients fold
a repeat into one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import asyncpg

from app.batching import GroupCommit
from app.errors import TransientError

ClaimVerdict = Literal["claim", "already_sent", "busy"]

_INSERT_CLAIM = (
    "INSERT INTO notifications (idempotency_key, channel, recipient, subject, job_id)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
# The same for many keys at once, answering in their order: the keys already present come back
# without an id, and so does a key repeated in the batch after its first occurrence (it takes
# the row-lock path, as it would have one call later).
_INSERT_CLAIMS = (
    "WITH new AS (INSERT INTO notifications (idempotency_key, channel, recipient, subject, job_id)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key)"
    " SELECT CASE WHEN k.n = min(k.n) OVER (PARTITION BY k.key) THEN new.id END AS id"
    " FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n)"
    " LEFT JOIN new ON new.idempotency_key = k.key ORDER BY k.n"
)
_MARK_SENT = (
    "UPDATE notifications n SET status = 'SENT', provider_id = u.provider_id, sent_at = now(), error = NULL"
    " FROM unnest($1::bigint[], $2::text[]) AS u(id, provider_id) WHERE n.id = u.id"
)


@dataclass(frozen=True, slots=True)
class Existing:
    status: str
    job_id: str | None
    claimed_at: dt.datetime


def judge(existing: Existing | None, job_id: str, now: dt.datetime, stale_after_s: float) -> ClaimVerdict:
    """Pure core of a claim: may `job_id` send a key whose row is `existing`?"""
    if existing is None or existing.status in ("FAILED", "SKIPPED"):
        return "claim"
    if existing.status == "SENT":
        return "already_sent"
    if existing.job_id == job_id:
        return "claim"
    if (now - existing.claimed_at).total_seconds() >= stale_after_s:
        return "claim"
    return "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    notification_id: int
    in_doubt: bool
    """The previous claim was a run that died mid-send."""


class AlreadySent(Exception):
    def __init__(self, notification_id: int) -> None:
        super().__init__(f"notification {notification_id} was already sent")
        self.notification_id = notification_id


_NewClaim = tuple[str, str, str, str | None, str]
"""(key, channel, recipient, subject, job_id)"""


class Ledger:
    def __init__(self, db: asyncpg.Pool, *, stale_after_s: float) -> None:
        self.db = db
        self.stale_after_s = stale_after_s
        # Shared statements: a key's first claim, and SENT marks (app/batching.py).
        self.new_claims = GroupCommit(self._insert_claims)
        self.sent_marks = GroupCommit(self._mark_sent)

    async def claim(self, key: str, channel: str, recipient: str, subject: str | None, job_id: str) -> Claim:
        """Claim `key` for a send by `job_id`; AlreadySent or TransientError (busy) otherwise."""
        # The common case, a key never seen, in one shared round trip; anything else takes the row lock.
        new_id = await self.new_claims.submit((key, channel, recipient, subject, job_id))
        if new_id is not None:
            return Claim(new_id, in_doubt=False)
        async with self.db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, status, job_id, claimed_at, now() AS now FROM notifications"
                " WHERE idempotency_key = $1 FOR UPDATE", key)
            if row is None:
                # Deleted since our INSERT found it (a purge): claim it afresh.
                new_id = await conn.fetchval(_INSERT_CLAIM, key, channel, recipient, subject, job_id)
                if new_id is None:
                    raise TransientError(f"notification {key!r} is being claimed by another job")
                return Claim(new_id, in_doubt=False)
            existing = Existing(row["status"], row["job_id"], row["claimed_at"])
            verdict = judge(existing, job_id, row["now"], self.stale_after_s)
            if verdict == "already_sent":
                raise AlreadySent(row["id"])
            if verdict == "busy":
                raise TransientError(f"notification {key!r} is being sent by job {existing.job_id}")
            in_doubt = existing.status == "SENDING"
            await conn.execute(
                "UPDATE notifications SET status = 'SENDING', job_id = $2, claimed_at = now(), error = NULL,"
                " attempts = attempts + 1, in_doubt_resends = in_doubt_resends + $3::int WHERE id = $1",
                row["id"], job_id, int(in_doubt))
            return Claim(row["id"], in_doubt=in_doubt)

    async def sent(self, notification_id: int, provider_id: str | None) -> None:
        await self.sent_marks.submit((notification_id, provider_id))

    async def _insert_claims(self, claims: list[_NewClaim]) -> list[int | None]:
        rows = await self.db.fetch(_INSERT_CLAIMS, *(list(column) for column in zip(*claims, strict=True)))
        return [row["id"] for row in rows]

    async def _mark_sent(self, marks: list[tuple[int, str | None]]) -> list[None]:
        ids, provider_ids = zip(*marks, strict=True)
        await self.db.execute(_MARK_SENT, list(ids), list(provider_ids))
        return [None] * len(marks)

    async def failed(self, notification_id: int, error: str) -> None:
        await self.db.execute(
            "UPDATE notifications SET status = 'FAILED', error = $2 WHERE id = $1", notification_id, error[:2000])

    async def skipped(self, key: str, channel: str, recipient: str, reason: str) -> int | None:
        """Record a skipped send (channel not configured) unless the key was already sent."""
        id_: int | None = await self.db.fetchval(
            "INSERT INTO notifications (idempotency_key, channel, recipient, status, error)"
            " VALUES ($1, $2, $3, 'SKIPPED', $4)"
            " ON CONFLICT (idempotency_key) DO UPDATE SET status = 'SKIPPED', error = EXCLUDED.error"
            " WHERE notifications.status IN ('FAILED', 'SKIPPED') RETURNING id",
            key, channel, recipient, reason)
        return id_
