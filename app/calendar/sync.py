"""Pure sync core: what one page of Google events means for our scheduling events.

Each Google event becomes one of three things:
- an upsert (EventRow), keyed by (connection, Google event id): a busy event on the calendar;
- a cancellation: deleted upstream (`status: cancelled`), shown as free (`transparency:
  transparent`), or declined by the calendar's owner; none of these can conflict with a meeting;
- ignored: an event the product created itself and pushed to Google (its private extended
  property `workhorseEventId`, or an iCalUID from app/notify/ics.py) is already here as itself,
  and an item without a usable id or time is counted, not stored.

All-day events start and end at midnight in the calendar's time zone (Google's end date is
exclusive); timed events keep the instant Google gives and the event's own IANA zone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OWN_EVENT_PROPERTY = "workhorseEventId"
"""The private extended property the product sets on events it pushes to Google."""
OWN_ICAL_UID_SUFFIX = "@workhorse"
"""app/notify/ics.py event_uid(): the iCalUID of an event the product created."""

MAX_ID_CHARS = 1024
MAX_TITLE_CHARS = 500
MAX_TEXT_CHARS = 8000
MAX_PARTICIPANTS = 200
UNTITLED = "(no title)"


@dataclass(frozen=True, slots=True)
class EventRow:
    """One scheduling event as Google has it; field names are the table's columns."""

    external_id: str
    title: str
    start_at: dt.datetime
    end_at: dt.datetime
    time_zone: str
    all_day: bool
    external_etag: str | None = None
    external_updated_at: dt.datetime | None = None
    description: str | None = None
    location: str | None = None
    meeting_url: str | None = None
    organizer_email: str | None = None
    organizer_name: str | None = None
    participants: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """For jsonb_to_recordset: instants as ISO 8601 with their offset."""
        row = asdict(self)
        for name in ("start_at", "end_at", "external_updated_at"):
            row[name] = row[name].isoformat() if row[name] is not None else None
        return row


@dataclass(slots=True)
class PagePlan:
    upserts: dict[str, EventRow] = field(default_factory=dict)
    cancels: set[str] = field(default_factory=set)
    own: int = 0
    invalid: int = 0


def sync_window(now: dt.datetime, *, days_back: int, days_ahead: int) -> tuple[dt.datetime, dt.datetime]:
    return now - dt.timedelta(days=days_back), now + dt.timedelta(days=days_ahead)


def internal_id(connection_id: str, external_id: str) -> str:
    """Our id of an imported event: stable, so a re-import finds the same row."""
    return "gcal_" + hashlib.sha256(f"{connection_id}\x1f{external_id}".encode()).hexdigest()[:32]


def plan_page(items: list[dict[str, Any]], calendar_tz: str | None) -> PagePlan:
    """Sort one page's items into upserts, cancellations, own and invalid; a later item for the
    same id wins over an earlier one."""
    plan = PagePlan()
    zone = valid_zone(calendar_tz)
    for item in items:
        external_id = valid_id(item.get("id"))
        if external_id is None:
            plan.invalid += 1
            continue
        if is_own(item):
            plan.own += 1
            continue
        plan.upserts.pop(external_id, None)
        plan.cancels.discard(external_id)
        if not is_busy(item):
            plan.cancels.add(external_id)
            continue
        row = to_row(external_id, item, zone)
        if row is None:
            plan.invalid += 1
        else:
            plan.upserts[external_id] = row
    return plan


def valid_id(value: object) -> str | None:
    """A Google event id we can key on: text without control characters, of a sane length."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        return None
    if any(ord(ch) < 32 for ch in value) or (not value.isascii() and _has_surrogate(value)):
        return None
    return value


def _has_surrogate(value: str) -> bool:
    """A lone UTF-16 surrogate (JSON allows "\\ud800"): PostgreSQL refuses it in text and jsonb."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def is_own(item: dict[str, Any]) -> bool:
    private = (item.get("extendedProperties") or {}).get("private") if isinstance(
        item.get("extendedProperties"), dict) else None
    if isinstance(private, dict) and private.get(OWN_EVENT_PROPERTY):
        return True
    uid = item.get("iCalUID")
    return isinstance(uid, str) and uid.endswith(OWN_ICAL_UID_SUFFIX)


def is_busy(item: dict[str, Any]) -> bool:
    """Whether the event blocks its owner's time."""
    if item.get("status") == "cancelled" or item.get("transparency") == "transparent":
        return False
    attendees = item.get("attendees")
    if isinstance(attendees, list):
        me = next((a for a in attendees if isinstance(a, dict) and a.get("self")), None)
        if me is not None and me.get("responseStatus") == "declined":
            return False
    return True


def to_row(external_id: str, item: dict[str, Any], calendar_zone: str) -> EventRow | None:
    """The row of a busy event; None when its times cannot be read."""
    start, end = item.get("start"), item.get("end")
    if not isinstance(start, dict) or not isinstance(end, dict):
        return None
    zone = valid_zone(start.get("timeZone")) if start.get("timeZone") else calendar_zone
    all_day = "date" in start and "dateTime" not in start
    start_at, end_at = read_time(start, zone), read_time(end, zone)
    if start_at is None:
        return None
    end_at = max(end_at or start_at, start_at)  # the table refuses an end before the start
    organizer: dict[str, Any] = item["organizer"] if isinstance(item.get("organizer"), dict) else {}
    return EventRow(
        external_id=external_id, title=_clean(item.get("summary"), MAX_TITLE_CHARS) or UNTITLED,
        start_at=start_at, end_at=end_at, time_zone=calendar_zone if all_day else zone, all_day=all_day,
        external_etag=_clean(item.get("etag"), MAX_ID_CHARS), external_updated_at=_instant(item.get("updated")),
        description=_clean(item.get("description"), MAX_TEXT_CHARS),
        location=_clean(item.get("location"), MAX_TITLE_CHARS), meeting_url=_meeting_url(item),
        organizer_email=_clean(organizer.get("email"), MAX_TITLE_CHARS),
        organizer_name=_clean(organizer.get("displayName"), MAX_TITLE_CHARS),
        participants=_participants(item.get("attendees")),
    )


def read_time(when: dict[str, Any], zone: str) -> dt.datetime | None:
    """A Google start/end: `dateTime` (RFC 3339; a naive one is read in `zone`) or an all-day
    `date`, which is midnight in `zone`."""
    if isinstance(when.get("dateTime"), str):
        instant = _instant(when["dateTime"], zone)
        return instant
    if isinstance(when.get("date"), str):
        try:
            day = dt.date.fromisoformat(when["date"])
        except ValueError:
            return None
        return dt.datetime.combine(day, dt.time(), ZoneInfo(zone))
    return None


def valid_zone(name: object) -> str:
    """`name` when it is an IANA zone this machine knows, else UTC."""
    if not isinstance(name, str) or not name or len(name) > 64 or "\x00" in name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "UTC"
    return name


def _instant(value: object, zone: str = "UTC") -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ZoneInfo(zone))


def _clean(value: object, limit: int) -> str | None:
    """Text fit for PostgreSQL: no NUL or lone surrogate (text refuses both), clipped, None when empty."""
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").encode(errors="replace").decode().strip()[:limit]
    return text or None


def _meeting_url(item: dict[str, Any]) -> str | None:
    conference = item.get("conferenceData")
    points = conference.get("entryPoints") if isinstance(conference, dict) else None
    for point in points if isinstance(points, list) else []:
        if isinstance(point, dict) and point.get("entryPointType") == "video":
            return _clean(point.get("uri"), MAX_TITLE_CHARS)
    return _clean(item.get("hangoutLink"), MAX_TITLE_CHARS)


def _participants(attendees: object) -> list[dict[str, str]]:
    """The web app's participant shape ({email, name}) for each attendee with an email."""
    people: list[dict[str, str]] = []
    for a in attendees[:MAX_PARTICIPANTS] if isinstance(attendees, list) else []:
        email = _clean(a.get("email"), MAX_TITLE_CHARS) if isinstance(a, dict) else None
        if email is None:
            continue
        person = {"email": email}
        name = _clean(a.get("displayName"), MAX_TITLE_CHARS)
        if name:
            person["name"] = name
        people.append(person)
    return people
