"""Each user's scheduling preferences (time zone, working hours, contact) and email → user id.

A user without a row gets the defaults: 09:00-17:00, Monday to Friday, in SCHEDULING_TIME_ZONE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.calendar.availability import WorkingHours
from app.calendar.events import Db
from app.calendar.when import zone


@dataclass(frozen=True, slots=True)
class Preferences:
    user_id: str
    email: str | None
    phone: str | None
    hours: WorkingHours


async def load_preferences(db: Db, user_id: str, *, default_zone: str) -> Preferences:
    row = await db.fetchrow(
        "SELECT email, phone, time_zone, work_start, work_end, work_days FROM user_scheduling_preferences"
        " WHERE user_id = $1", user_id)
    if row is None:
        return Preferences(user_id, None, None, WorkingHours(time_zone=str(zone(default_zone, "UTC"))))
    hours = WorkingHours(time_zone=str(zone(row["time_zone"], default_zone)), start=row["work_start"],
                         end=row["work_end"], days=frozenset(int(d) for d in row["work_days"]))
    return Preferences(user_id, row["email"], row["phone"], hours)


async def user_ids_for(db: Db, emails: Iterable[str]) -> set[str]:
    """The user ids of the people among `emails` who are users here."""
    wanted = sorted({e.strip().lower() for e in emails if e})
    if not wanted:
        return set()
    rows = await db.fetch(
        "SELECT user_id FROM user_scheduling_preferences WHERE lower(email) = ANY($1::text[])", wanted)
    return {r["user_id"] for r in rows}
