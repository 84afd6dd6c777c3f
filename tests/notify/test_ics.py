"""The invitations we attach (app/notify/ics.py), read back by icalendar: every property as given,
folded without splitting a character or an escape, the zone defined before the event."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Component, Timezone

from app.notify.ics import Invite, build_ics, event_uid

NOW = dt.datetime(2026, 12, 1, 12, 0, 7, tzinfo=dt.UTC)


TRICKY = 'Plan; review, \\ and\nnext 🎉 C:\\Notes ^caret "quoted" ,;:'


START = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)


TYPICAL = Invite(
    event_id="ev-1", title="Quarterly review", start=START, end=START + dt.timedelta(hours=1),
    time_zone="America/New_York", organizer_email="olga@example.com", organizer_name="Olga",
    attendees=(("ana@example.com", "Ana"), ("bo@example.com", None)), meeting_url="https://meet.test/x")


INVITES = {
    "typical": TYPICAL,
    "tricky text": replace(
        TYPICAL, event_id="ev,2;x", title=TRICKY, description="Line 1\nLine 2, with; \\ back\n\nemoji 🧪🎉 end\\",
        location="Room 1, Floor; 2 \\ east", meeting_url="https://meet.test/x?a=1,2;b=c", sequence=7,
        organizer_name='Olga "O" Smith, PhD', time_zone="Europe/Berlin",
        attendees=(("ana@example.com", "Zoë; Ünal: x"), ("bo@example.com", 'B "q", ^up^'),
                   ("c@example.com", "日本語の名前" * 6), ("d@example.com", "O'Brien"),
                   ("e@example.com", "two\nlines"))),
    "300-char title": replace(
        TYPICAL, title=("Planning ☕ " * 30)[:300], time_zone="Asia/Kolkata", description="é" * 200, location=None),
    "escapes at every fold": replace(
        TYPICAL, title="\\" * 151 + ";," * 60 + "\n" * 40, description="^\\" * 120),
    "utc zone, no organizer, no url": replace(
        TYPICAL, time_zone="UTC", organizer_email=None, organizer_name=None, meeting_url=None, location="Here",
        attendees=()),
}


def assert_folded(raw: bytes) -> None:
    """Every physical line within 75 octets, ended by CRLF, whole UTF-8 on its own, and no fold
    between a backslash or caret and the character it escapes (some clients cannot rejoin those)."""
    assert raw.endswith(b"\r\n")
    lines = raw[:-2].split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert [line for line in lines if len(line) > 75] == []
    for line, after in zip(lines, [*lines[1:], b""], strict=True):
        line.decode("utf-8")  # a fold inside a character would leave half of it on each line
        if after.startswith(b" "):
            assert (len(line) - len(line.rstrip(b"\\"))) % 2 == 0, line
            assert (len(line) - len(line.rstrip(b"^"))) % 2 == 0, line


def properties(component: Component, name: str) -> list[tuple[str, dict[str, str]]]:
    """Each value of the property `name` with its parameters (none, one, or a list of them)."""
    found = component.get(name)
    values = [] if found is None else found if isinstance(found, list) else [found]
    return [(str(value), dict(value.params)) for value in values]


@pytest.mark.parametrize("case", INVITES)
def test_every_invitation_property_reads_back_unchanged(case: str) -> None:
    """icalendar reads back each value as given: TEXT escapes, quoted and RFC 6868 escaped
    parameters, times in the invite's zone (UTC as `Z`), and folding that splits no character."""
    given = INVITES[case]
    raw = build_ics(given, now=NOW)
    assert_folded(raw)
    calendar = Calendar.from_ical(raw)
    assert all(not getattr(c, "errors", None) for c in calendar.walk())
    assert (str(calendar["version"]), str(calendar["prodid"]), str(calendar["method"])) == (
        "2.0", "-//Workhorse//Scheduling//EN", "REQUEST")
    [event] = calendar.walk("VEVENT")
    assert str(event["uid"]) == event_uid(given.event_id)
    assert event.decoded("sequence") == given.sequence
    assert str(event["summary"]) == given.title
    assert event.decoded("dtstamp") == NOW
    start, end = event.decoded("dtstart"), event.decoded("dtend")
    assert (start, end) == (given.start, given.end)
    if given.time_zone == "UTC":
        assert start.utcoffset() == dt.timedelta(0) and b"DTSTART:20261202T150000Z\r\n" in raw
    else:
        assert str(start.tzinfo) == given.time_zone and start.hour == given.start.astimezone(
            ZoneInfo(given.time_zone)).hour
        [zone] = calendar.walk("VTIMEZONE")
        assert str(zone["tzid"]) == given.time_zone
    assert [v for v, _ in properties(event, "description")] == [d for d in [given.description] if d]
    assert [v for v, _ in properties(event, "location")] == [w for w in [given.location or given.meeting_url] if w]
    assert [v for v, _ in properties(event, "url")] == [u for u in [given.meeting_url] if u]
    assert properties(event, "organizer") == (
        [(f"mailto:{given.organizer_email}", {"CN": given.organizer_name} if given.organizer_name else {})]
        if given.organizer_email else [])
    assert properties(event, "attendee") == [
        (f"mailto:{address}", {"ROLE": "REQ-PARTICIPANT", "RSVP": "TRUE", **({"CN": name} if name else {})})
        for address, name in given.attendees]


def test_line_breaks_of_any_kind_become_text_newlines() -> None:
    """CRLF and a lone CR in text are written as \\n, as icalendar did: one newline each."""
    raw = build_ics(replace(TYPICAL, title="a\r\nb\rc\nd"), now=NOW)
    assert b"SUMMARY:a\\nb\\nc\\nd\r\n" in raw
    [event] = Calendar.from_ical(raw).walk("VEVENT")
    assert str(event["summary"]) == "a\nb\nc\nd"


def test_the_vtimezone_comes_before_the_event() -> None:
    """Calendar clients read the zone definition first; it is the one icalendar builds."""
    raw = build_ics(replace(TYPICAL, time_zone="Europe/Berlin"), now=NOW)
    assert bytes(Timezone.from_tzid("Europe/Berlin").to_ical()) in raw
    assert raw.index(b"BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n") < raw.index(b"BEGIN:VEVENT\r\n")
    assert raw.startswith(b"BEGIN:VCALENDAR\r\n") and raw.endswith(b"END:VEVENT\r\nEND:VCALENDAR\r\n")
