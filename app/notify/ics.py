"""Calendar invitations (.ics, METHOD:REQUEST) built with the icalendar library.

The UID is stable per event and SEQUENCE grows with each change, so a calendar that already
has the event updates it instead of adding a second copy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress, vText


@dataclass(frozen=True, slots=True)
class Invite:
    event_id: str
    title: str
    start: dt.datetime
    end: dt.datetime
    time_zone: str
    organizer_email: str | None
    organizer_name: str | None
    attendees: tuple[tuple[str, str | None], ...]
    """(email, name) of each attendee."""
    location: str | None = None
    meeting_url: str | None = None
    description: str | None = None
    sequence: int = 0


def event_uid(event_id: str) -> str:
    return f"{event_id}@workhorse"


def build_ics(invite: Invite, *, now: dt.datetime | None = None) -> bytes:
    tz = ZoneInfo(invite.time_zone)
    cal = Calendar()
    cal.add("prodid", "-//Workhorse//Scheduling//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    ev = Event()
    ev.add("uid", event_uid(invite.event_id))
    ev.add("sequence", invite.sequence)
    ev.add("dtstamp", now or dt.datetime.now(dt.UTC))
    ev.add("dtstart", invite.start.astimezone(tz))
    ev.add("dtend", invite.end.astimezone(tz))
    ev.add("summary", invite.title)
    if invite.description:
        ev.add("description", invite.description)
    if invite.location or invite.meeting_url:
        ev.add("location", invite.location or invite.meeting_url)
    if invite.meeting_url:
        ev.add("url", invite.meeting_url)
    if invite.organizer_email:
        organizer = vCalAddress(f"mailto:{invite.organizer_email}")
        if invite.organizer_name:
            organizer.params["cn"] = vText(invite.organizer_name)
        ev.add("organizer", organizer)
    for email, name in invite.attendees:
        attendee = vCalAddress(f"mailto:{email}")
        attendee.params.update({"role": vText("REQ-PARTICIPANT"), "rsvp": vText("TRUE")})
        if name:
            attendee.params["cn"] = vText(name)
        ev.add("attendee", attendee, encode=False)
    cal.add_component(ev)
    head, _, tail = bytes(cal.to_ical()).partition(b"BEGIN:VEVENT")
    return head + _vtimezone(invite.time_zone) + b"BEGIN:VEVENT" + tail


@cache
def _vtimezone(tzid: str) -> bytes:
    """The VTIMEZONE that defines `tzid` for calendar clients, serialized once per zone: with a
    transition per year it costs more to build than all the rest of an invitation."""
    return bytes(Timezone.from_tzid(tzid).to_ical())
