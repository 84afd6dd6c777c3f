"""Who is busy when, and the free slots nearest a requested time, for conflict-aware scheduling.

Busy time is every SCHEDULED event of any source (booked here, or imported by calendar sync)
that belongs to one of the people: owned by their user id, organized by them, or listing their
email among its participants. The free-slot search is a pure function of that busy time, the
owner's working hours and "now", so it is tested as a table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.calendar.events import Db
from app.calendar.when import zone

SLOT_STEP = dt.timedelta(minutes=30)
"""Alternatives start on this grid from the start of the working day."""
SEARCH_DAYS = 7
ALTERNATIVES = 5


@dataclass(frozen=True, slots=True)
class Interval:
    start: dt.datetime
    end: dt.datetime

    def overlaps(self, other: Interval) -> bool:
        """Touching intervals (one ends as the other starts) do not overlap."""
        return self.start < other.end and other.start < self.end

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class WorkingHours:
    time_zone: str = "UTC"
    start: dt.time = dt.time(9)
    end: dt.time = dt.time(17)
    days: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    """ISO weekdays: 1 is Monday."""


@dataclass(frozen=True, slots=True)
class BusyEvent:
    id: str
    title: str
    interval: Interval
    source: str


@dataclass(frozen=True, slots=True)
class People:
    """Whose calendars count: user ids, and emails (lower-cased) of people who may have no user id."""

    user_ids: frozenset[str] = field(default_factory=frozenset)
    emails: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, user_ids: Iterable[str | None], emails: Iterable[str | None]) -> People:
        return cls(frozenset(u for u in user_ids if u), frozenset(e.strip().lower() for e in emails if e))

    def lock_keys(self) -> list[str]:
        """One key per person, sorted so every booking takes its locks in the same order."""
        return sorted({f"user:{u}" for u in self.user_ids} | {f"email:{e}" for e in self.emails})


def free_slots(wanted: Interval, busy: Sequence[Interval], hours: WorkingHours, *, now: dt.datetime,
               count: int = ALTERNATIVES, days: int = SEARCH_DAYS, step: dt.timedelta = SLOT_STEP) -> list[Interval]:
    """Pure core: up to `count` free slots as long as `wanted`, inside working hours, from the
    requested day to `days` days after the requested time, none starting before `now`; nearest
    to the requested start first (ties: the earlier one)."""
    tz = zone(hours.time_zone, "UTC")
    duration = wanted.duration
    first_day = wanted.start.astimezone(tz).date()
    horizon = wanted.start + dt.timedelta(days=days)
    found: list[Interval] = []
    for offset in range(days + 1):
        day = first_day + dt.timedelta(days=offset)
        if day.isoweekday() not in hours.days:
            continue
        start = dt.datetime.combine(day, hours.start, tzinfo=tz)
        day_end = dt.datetime.combine(day, hours.end, tzinfo=tz)
        while start + duration <= day_end:
            slot = Interval(start.astimezone(dt.UTC), (start + duration).astimezone(dt.UTC))
            if now <= slot.start <= horizon and not any(slot.overlaps(b) for b in busy):
                found.append(slot)
            start += step
    found.sort(key=lambda s: (abs(s.start - wanted.start), s.start))
    return found[:count]


_BUSY = """
SELECT id, title, start_at, end_at, source FROM scheduling_events e
WHERE status = 'SCHEDULED' AND start_at < $2 AND end_at > $1 AND NOT (id = ANY($5::text[]))
  AND (user_id = ANY($3::text[])
       OR lower(organizer_email) = ANY($4::text[])
       OR (jsonb_typeof(participants) = 'array' AND EXISTS (
             SELECT 1 FROM jsonb_array_elements(participants) p
             WHERE lower(COALESCE(p ->> 'email', p #>> '{}')) = ANY($4::text[]))))
ORDER BY start_at, id
"""


async def busy_events(db: Db, people: People, window: Interval, *,
                      ignore: Sequence[str] = ()) -> list[BusyEvent]:
    """Every SCHEDULED event of `people` overlapping `window` (except the events in `ignore`)."""
    rows = await db.fetch(_BUSY, window.start, window.end, sorted(people.user_ids), sorted(people.emails),
                          list(ignore))
    return [BusyEvent(r["id"], r["title"], Interval(r["start_at"], r["end_at"]), r["source"]) for r in rows]
