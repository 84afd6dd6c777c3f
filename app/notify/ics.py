"""Calendar invitations (.ics, METHOD:REQUEST), written line by line following RFC 5545.

The UID is stable per event and SEQUENCE grows with each change, so a calendar that already
has the event updates it instead of adding a second copy.

The lines are those the icalendar library wrote, in its order: building its objects cost about
a seventh of a reminder's CPU, for a handful of lines that are simple to write directly. Two
differences: lines fold at 75 octets (icalendar: 74) without splitting an escape, and a backslash
followed by "N" in text stays as written (icalendar turned the pair into a line break). Only the
VTIMEZONE still comes from icalendar, built once per zone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

from icalendar import Timezone
from icalendar.timezone.tzid import is_utc


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


_CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Workhorse//Scheduling//EN\r\nMETHOD:REQUEST\r\n"
_OCTETS = 75
"""RFC 5545 3.1: content lines are folded to at most 75 octets, line break excluded."""
_QUOTED_PARAM = re.compile("[,;: '\u2019]")
"""RFC 5545 requires the quotes for ',', ';' and ':'; icalendar also quoted a CN holding a space
or an apostrophe (' or U+2019; parsers may trim unquoted spaces), and so do we."""


def event_uid(event_id: str) -> str:
    return f"{event_id}@workhorse"


def build_ics(invite: Invite, *, now: dt.datetime | None = None) -> bytes:
    tz = ZoneInfo(invite.time_zone)
    lines = [
        f"SUMMARY:{_text(invite.title)}",
        _local_time("DTSTART", invite.start.astimezone(tz), invite.time_zone),
        _local_time("DTEND", invite.end.astimezone(tz), invite.time_zone),
        f"DTSTAMP:{_stamp((now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))}Z",
        f"UID:{_text(event_uid(invite.event_id))}",
        f"SEQUENCE:{invite.sequence}",
    ]
    lines += [_address("ATTENDEE", email, name, ";ROLE=REQ-PARTICIPANT;RSVP=TRUE") for email, name in invite.attendees]
    if invite.description:
        lines.append(f"DESCRIPTION:{_text(invite.description)}")
    where = invite.location or invite.meeting_url
    if where:
        lines.append(f"LOCATION:{_text(where)}")
    if invite.organizer_email:
        lines.append(_address("ORGANIZER", invite.organizer_email, invite.organizer_name, ""))
    if invite.meeting_url:
        lines.append(f"URL:{invite.meeting_url}")  # a URI, which RFC 5545 does not escape
    event = b"".join(map(_fold, lines))
    return _CALENDAR + _vtimezone(invite.time_zone) + b"BEGIN:VEVENT\r\n" + event + b"END:VEVENT\r\nEND:VCALENDAR\r\n"


def _local_time(name: str, at: dt.datetime, tzid: str) -> str:
    if _is_utc(tzid):
        return f"{name}:{_stamp(at)}Z"
    return f"{name};TZID={tzid}:{_stamp(at)}"


def _stamp(at: dt.datetime) -> str:
    return f"{at.year:04}{at.month:02}{at.day:02}T{at.hour:02}{at.minute:02}{at.second:02}"


@cache
def _is_utc(tzid: str) -> bool:
    """icalendar wrote times in a zone it finds equal to UTC (UTC, Etc/UTC, also Africa/Abidjan,
    Iceland ...) as UTC times, `...Z`, rather than with a TZID; asked once per zone, the same here."""
    return bool(is_utc(ZoneInfo(tzid)))


def _address(name: str, email: str, cn: str | None, params: str) -> str:
    """A CAL-ADDRESS property; parameters in icalendar's (alphabetical) order, CN first."""
    common_name = f";CN={_param(cn)}" if cn else ""
    return f"{name}{common_name}{params}:mailto:{email}"


def _text(value: str) -> str:
    """RFC 5545 3.3.11 TEXT: backslash, semicolon and comma escaped; any line break becomes \\n."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _param(value: str) -> str:
    """A parameter value: RFC 6868 escapes for ^, " and line breaks (a double quote cannot appear
    in one otherwise), double-quoted when it holds ',', ';', ':' or a space (RFC 5545 3.2)."""
    value = (value.replace("^", "^^").replace('"', "^'")
             .replace("\r\n", "^n").replace("\n", "^n").replace("\r", "^n"))
    return f'"{value}"' if _QUOTED_PARAM.search(value) else value


def _fold(line: str) -> bytes:
    """One content line with its CRLF, folded at 75 octets (RFC 5545 3.1) between whole UTF-8
    characters and never inside an escape such as \\n or ^', which some clients fail to rejoin."""
    raw = line.encode()
    if len(raw) <= _OCTETS:
        return raw + b"\r\n"
    pieces: list[bytes] = []
    start, width = 0, _OCTETS
    while len(raw) - start > width:
        cut = start + width
        while raw[cut] & 0xC0 == 0x80:  # a continuation byte: back up to the character's first
            cut -= 1
        # Stepping back over a caret can leave a backslash at the end, or the other way round.
        while cut - 1 > start and _opens_escape(raw, start, cut - 1):
            cut -= 1
        pieces.append(raw[start:cut])
        start, width = cut, _OCTETS - 1  # a continuation line's leading space counts
    pieces.append(raw[start:])
    return b"\r\n ".join(pieces) + b"\r\n"


def _opens_escape(raw: bytes, start: int, at: int) -> bool:
    """Whether raw[at] may open an escape, a backslash in TEXT or a caret in a parameter: an odd run
    of them ends there. Each is taken for an escape anywhere, which at worst shortens a line."""
    char = raw[at]
    if char not in b"\\^":
        return False
    first = at
    while first > start and raw[first - 1] == char:
        first -= 1
    return (at - first) % 2 == 0


@cache
def _vtimezone(tzid: str) -> bytes:
    """The VTIMEZONE that defines `tzid` for calendar clients, serialized once per zone: with a
    transition per year it costs more to build than all the rest of an invitation."""
    return bytes(Timezone.from_tzid(tzid).to_ical())
