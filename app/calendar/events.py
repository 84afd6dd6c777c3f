"""Create, reschedule or cancel a scheduling event together with its reminders (the web app's
Python side and the scheduling agent).

Creating the event and its reminders in one transaction means an event never exists without
them; the reminder scan (every 5 min) sends each when it comes due. Rescheduling skips the
active reminders (they stay as history) and creates new ones for the new time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
Db = asyncpg.Pool | Connection

REMINDER_LEAD = {"24h": dt.timedelta(hours=24), "2h": dt.timedelta(hours=2)}
FOLLOW_UP_AFTER_END = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    org_id: str
    title: str
    start_at: dt.datetime
    end_at: dt.datetime
    time_zone: str = "UTC"
    participants: Sequence[dict[str, Any]] = field(default_factory=tuple)
    """[{"email", "name", "phone", "timeZone"}], as the web app stores them."""
    organizer_email: str | None = None
    organizer_name: str | None = None
    location: str | None = None
    meeting_url: str | None = None
    description: str | None = None
    follow_up: bool = False
    """Also send a follow-up an hour after the end."""
    user_id: str | None = None
    """Whose calendar the event is on (conflict detection reads it)."""
    agent_task_id: str | None = None


def reminder_times(start_at: dt.datetime, end_at: dt.datetime, now: dt.datetime, *,
                   follow_up: bool) -> dict[str, dt.datetime]:
    """Pure core: each reminder kind and its time; a reminder already in the past is not created
    (a 24 h reminder for a meeting three hours away would arrive late and say the wrong thing)."""
    times = {kind: start_at - lead for kind, lead in REMINDER_LEAD.items()}
    if follow_up:
        times["follow_up"] = end_at + FOLLOW_UP_AFTER_END
    return {kind: at for kind, at in times.items() if at > now}


async def create_event(db: Db, event: NewEvent,
                       *, now: dt.datetime | None = None) -> dict[str, int]:
    """Insert the event and its reminders; returns the reminder id of each kind created."""
    if event.end_at < event.start_at:
        raise ValueError("end_at is before start_at")
    times = reminder_times(event.start_at, event.end_at, now or dt.datetime.now(dt.UTC), follow_up=event.follow_up)
    # `::text::jsonb`: the JSON goes as text, so this works with or without a jsonb codec.
    async with _connection(db) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO scheduling_events (id, org_id, title, description, location, meeting_url, start_at, end_at,"
            " time_zone, organizer_email, organizer_name, participants, user_id, agent_task_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14)",
            event.id, event.org_id, event.title, event.description, event.location, event.meeting_url,
            event.start_at, event.end_at, event.time_zone, event.organizer_email, event.organizer_name,
            json.dumps(list(event.participants)), event.user_id, event.agent_task_id)
        return await _add_reminders(conn, event.id, times)


async def reschedule_event(db: Db, event_id: str, start_at: dt.datetime, end_at: dt.datetime,
                           *, now: dt.datetime | None = None) -> dict[str, int]:
    """Move the event (SEQUENCE + 1); its active reminders are skipped and new ones created.
    Returns the new reminder id of each kind."""
    if end_at < start_at:
        raise ValueError("end_at is before start_at")
    async with _connection(db) as conn, conn.transaction():
        await conn.execute(
            "UPDATE scheduling_events SET start_at = $2, end_at = $3, updated_at = now(), sequence = sequence + 1"
            " WHERE id = $1", event_id, start_at, end_at)
        follow_up = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM event_reminders WHERE event_id = $1 AND kind = 'follow_up')", event_id)
        await _skip_active(conn, event_id, "event rescheduled")
        times = reminder_times(start_at, end_at, now or dt.datetime.now(dt.UTC), follow_up=bool(follow_up))
        return await _add_reminders(conn, event_id, times)


async def cancel_event(db: Db, event_id: str) -> int:
    """Cancel the event; its pending reminders are skipped. Returns how many were skipped."""
    async with _connection(db) as conn, conn.transaction():
        await conn.execute(
            "UPDATE scheduling_events SET status = 'CANCELLED', updated_at = now(), sequence = sequence + 1"
            " WHERE id = $1", event_id)
        return await _skip_active(conn, event_id, "event cancelled")


async def _skip_active(conn: Connection, event_id: str, reason: str) -> int:
    # QUEUED too: its send job reads the status first and stops at SKIPPED.
    skipped: str = await conn.execute(
        "UPDATE event_reminders SET status = 'SKIPPED', skip_reason = $2"
        " WHERE event_id = $1 AND status IN ('PENDING', 'QUEUED')", event_id, reason)
    return int(skipped.rsplit(" ", 1)[-1])


async def _add_reminders(conn: Connection, event_id: str, times: dict[str, dt.datetime]) -> dict[str, int]:
    rows = await conn.fetch(
        "INSERT INTO event_reminders (event_id, kind, reminder_time)"
        " SELECT $1, kind, at FROM unnest($2::text[], $3::timestamptz[]) AS t(kind, at) RETURNING id, kind",
        event_id, list(times), list(times.values()))
    return {r["kind"]: r["id"] for r in rows}


@asynccontextmanager
async def _connection(db: Db) -> AsyncIterator[Connection]:
    """A pool's connection for the block, or the given connection itself (the caller's transaction)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
