"""Booking without double booking: check and write under a per-person lock in PostgreSQL.

Two jobs booking overlapping times for one person must not both succeed. Each booking takes a
transaction-scoped advisory lock per person involved (owner's user id, every participant's
email), always in the same sorted order so two bookings cannot deadlock, then reads that
person's busy time and writes the event before the locks are released at commit. The second
booking therefore reads the first one's event and reports a conflict. (An exclusion constraint
would need btree_gist, which the bundled PostgreSQL lacks, and could not cover participants
known only by email.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from app.calendar.availability import BusyEvent, Interval, People, busy_events
from app.calendar.events import NewEvent, create_event, reschedule_event

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


@dataclass(frozen=True, slots=True)
class Booked:
    event_id: str
    created: bool
    """False when the event already existed (this booking ran before)."""


@dataclass(frozen=True, slots=True)
class Busy:
    conflicts: list[BusyEvent]


async def book(db: asyncpg.Pool, event: NewEvent, people: People, *, check_conflicts: bool = True,
               now: dt.datetime | None = None) -> Booked | Busy:
    """Create `event` unless one of `people` is busy then; idempotent per event id."""
    async with db.acquire() as conn, conn.transaction():
        for key in people.lock_keys():
            await conn.execute(_LOCK, key)
        if await conn.fetchval("SELECT 1 FROM scheduling_events WHERE id = $1", event.id):
            return Booked(event.id, created=False)
        if check_conflicts:
            conflicts = await busy_events(conn, people, Interval(event.start_at, event.end_at))
            if conflicts:
                return Busy(conflicts)
        await create_event(conn, event, now=now)
    return Booked(event.id, created=True)


async def rebook(db: asyncpg.Pool, event_id: str, wanted: Interval, people: People, *,
                 now: dt.datetime | None = None) -> Booked | Busy:
    """Move an event to `wanted` unless one of `people` is busy then (the event itself aside)."""
    async with db.acquire() as conn, conn.transaction():
        for key in people.lock_keys():
            await conn.execute(_LOCK, key)
        current = await conn.fetchrow("SELECT start_at, end_at FROM scheduling_events WHERE id = $1", event_id)
        if current is not None and (current["start_at"], current["end_at"]) == (wanted.start, wanted.end):
            return Booked(event_id, created=False)
        conflicts = await busy_events(conn, people, wanted, ignore=[event_id])
        if conflicts:
            return Busy(conflicts)
        await reschedule_event(conn, event_id, wanted.start, wanted.end, now=now)
    return Booked(event_id, created=True)
