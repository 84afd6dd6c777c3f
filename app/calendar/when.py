"""Pure core of a reminder's wording: the start time in the reader's own time zone."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True)
class When:
    relative: str
    """"in 2 hours", "in 24 hours", "in 15 minutes", "now"."""
    date: str
    """"Tuesday, 1 December 2026"."""
    time: str
    """"14:00"."""
    zone: str
    """"CET", or the zone's name when it has no abbreviation."""


def zone(name: str | None, fallback: str) -> ZoneInfo:
    """The participant's zone, else the event's, else UTC (an unknown name is not an error)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def relative(delta: dt.timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    if minutes <= 0:
        return "now"
    if minutes < 60:
        return f"in {minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(minutes / 60)
    if hours < 48:
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    days = round(hours / 24)
    return f"in {days} days"


def describe(start: dt.datetime, now: dt.datetime, tz: ZoneInfo) -> When:
    local = start.astimezone(tz)
    return When(
        relative=relative(start - now),
        date=f"{local:%A}, {local.day} {local:%B %Y}",
        time=f"{local:%H:%M}",
        zone=local.tzname() or str(tz),
    )
