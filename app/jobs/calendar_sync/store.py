"""Writing one page's plan into scheduling_events: upserts keyed by (connection, Google id),
cancellations with their reminders, and what a full sync no longer saw.

An existing row is rewritten only when Google's etag changed (or it was cancelled here) and
Google's `updated` is not older than ours, so replaying a page changes nothing and never
duplicates: the UNIQUE (calendar_connection_id, external_id) key is the conflict target.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app.calendar.connections import Connection, Db
from app.calendar.sync import PagePlan, internal_id

_UPSERT = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset($4::text::jsonb) AS r(
        id text, external_id text, title text, start_at timestamptz, end_at timestamptz, time_zone text,
        all_day boolean, external_etag text, external_updated_at timestamptz, description text, location text,
        meeting_url text, organizer_email text, organizer_name text, participants jsonb)
), written AS (
    INSERT INTO scheduling_events AS e (id, org_id, user_id, source, calendar_connection_id, external_id, title,
        description, location, meeting_url, start_at, end_at, time_zone, all_day, organizer_email, organizer_name,
        participants, external_etag, external_updated_at, status)
    SELECT r.id, $1, $2, 'google', $3, r.external_id, r.title, r.description, r.location, r.meeting_url,
        r.start_at, r.end_at, r.time_zone, r.all_day, r.organizer_email, r.organizer_name,
        COALESCE(r.participants, '[]'), r.external_etag, r.external_updated_at, 'SCHEDULED'
    FROM incoming r
    ON CONFLICT (calendar_connection_id, external_id) DO UPDATE SET
        title = EXCLUDED.title, description = EXCLUDED.description, location = EXCLUDED.location,
        meeting_url = EXCLUDED.meeting_url, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
        time_zone = EXCLUDED.time_zone, all_day = EXCLUDED.all_day, organizer_email = EXCLUDED.organizer_email,
        organizer_name = EXCLUDED.organizer_name, participants = EXCLUDED.participants,
        external_etag = EXCLUDED.external_etag, external_updated_at = EXCLUDED.external_updated_at,
        user_id = EXCLUDED.user_id, status = 'SCHEDULED', updated_at = now(), sequence = e.sequence + 1
    WHERE (e.external_etag IS DISTINCT FROM EXCLUDED.external_etag OR e.status <> 'SCHEDULED')
      AND (e.external_updated_at IS NULL OR EXCLUDED.external_updated_at IS NULL
           OR EXCLUDED.external_updated_at >= e.external_updated_at)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS updated FROM written
"""

# Cancel SCHEDULED imported events of the connection picked by $2 (ids) or, when $2 is NULL,
# those a full sync of the window [$3, $4) did not see busy ($5); their pending reminders are skipped.
_CANCEL = """
WITH cancelled AS (
    UPDATE scheduling_events SET status = 'CANCELLED', updated_at = now(), sequence = sequence + 1
    WHERE calendar_connection_id = $1 AND source = 'google' AND status = 'SCHEDULED'
      AND (($2::text[] IS NOT NULL AND external_id = ANY($2::text[]))
           OR ($2::text[] IS NULL AND end_at > $3 AND start_at < $4 AND NOT (external_id = ANY($5::text[]))))
    RETURNING id
), skipped AS (
    UPDATE event_reminders SET status = 'SKIPPED', skip_reason = 'event cancelled'
    WHERE status = 'PENDING' AND event_id IN (SELECT id FROM cancelled)
    RETURNING id
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled, (SELECT count(*) FROM skipped) AS reminders
"""


@dataclass(slots=True)
class Applied:
    created: int = 0
    updated: int = 0
    cancelled: int = 0
    reminders_skipped: int = 0
    own_skipped: int = 0
    invalid: int = 0


async def apply(db: Db, conn: Connection, plan: PagePlan, into: Applied) -> None:
    """Write one page's plan (one transaction) and add its counts to `into`."""
    rows = [{**row.to_json(), "id": internal_id(conn.id, row.external_id)} for row in plan.upserts.values()]
    async with _transaction(db) as tx:
        if rows:
            counts = await tx.fetchrow(_UPSERT, conn.org_id, conn.user_id, conn.id, json.dumps(rows))
            assert counts is not None
            into.created += counts["created"]
            into.updated += counts["updated"]
        if plan.cancels:
            await _cancel(tx, conn.id, into, ids=sorted(plan.cancels))
    into.own_skipped += plan.own
    into.invalid += plan.invalid


async def cancel_unseen(db: Db, conn: Connection, seen: Collection[str], window: tuple[dt.datetime, dt.datetime],
                        into: Applied) -> None:
    """After a full sync: cancel the connection's events in the window that Google no longer has."""
    await _cancel(db, conn.id, into, ids=None, window=window, seen=sorted(seen))


async def _cancel(db: Db, connection_id: str, into: Applied, *, ids: list[str] | None,
                  window: tuple[dt.datetime, dt.datetime] | None = None, seen: list[str] | None = None) -> None:
    start, end = window or (None, None)
    row = await db.fetchrow(_CANCEL, connection_id, ids, start, end, seen)
    assert row is not None
    into.cancelled += row["cancelled"]
    into.reminders_skipped += row["reminders"]


@asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[asyncpg.Connection | PoolConnectionProxy]:
    """A transaction on one of the pool's connections, or on the given connection."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
