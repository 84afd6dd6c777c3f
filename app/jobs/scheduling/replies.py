"""Pure core of the agent's replies: the same facts worded for each channel.

A reply's idempotency digest is a hash of its facts, so a retried job sends the same key (and
nothing twice) while a changed meeting (rescheduled: new time, new SEQUENCE) is a new message.
Times are written in the reader's zone without relative words ("in 2 hours"), which would make
the same reply differ between attempts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from app.calendar.availability import Interval
from app.calendar.when import zone
from app.notify.ics import Invite

SMS_LIMIT = 160
WEBHOOK_EVENTS = {"confirmation": "scheduling.confirmed", "alternatives": "scheduling.conflict_detected",
                  "cancellation": "scheduling.cancelled", "clarification": "scheduling.clarification_needed",
                  "error": "scheduling.error"}


@dataclass(frozen=True, slots=True)
class EventView:
    id: str
    title: str
    start: dt.datetime
    end: dt.datetime
    time_zone: str
    location: str | None
    description: str | None
    organizer_email: str | None
    participants: tuple[str, ...]
    sequence: int


@dataclass(frozen=True, slots=True)
class Facts:
    response_type: str
    task_id: str
    time_zone: str
    link: str
    event: EventView | None = None
    alternatives: tuple[Interval, ...] = ()
    note: str | None = None
    """Metadata's `message`: the question of a clarification, the text of an error."""
    extra: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def when(interval: Interval, tz_name: str) -> str:
    tz = zone(tz_name, "UTC")
    start, end = interval.start.astimezone(tz), interval.end.astimezone(tz)
    return f"{start:%a} {start.day} {start:%b %Y}, {start:%H:%M}-{end:%H:%M} {start.tzname() or tz_name}"


def _span(f: Facts) -> str:
    assert f.event is not None
    return when(Interval(f.event.start, f.event.end), f.time_zone)


def subject(f: Facts) -> str:
    title = f.event.title if f.event else "your request"
    return {"confirmation": f"Confirmed: {title}", "alternatives": "That time is taken: pick another",
            "cancellation": f"Cancelled: {title}", "clarification": "A question about your request",
            }.get(f.response_type, "We could not complete your request")


def lines(f: Facts) -> list[str]:
    """The reply as plain lines; the first is the headline."""
    if f.response_type in ("confirmation", "cancellation") and f.event:
        verb = "is booked" if f.response_type == "confirmation" else "is cancelled"
        out = [f"{f.event.title} {verb}: {_span(f)}."]
        if f.event.location:
            out.append(f"Where: {f.event.location}")
        if f.event.participants:
            out.append("Participants: " + ", ".join(f.event.participants))
        return out
    if f.response_type == "alternatives":
        if not f.alternatives:
            return ["That time is taken and no free slot was found in the next 7 days."]
        options = [f"{i}. {when(slot, f.time_zone)}" for i, slot in enumerate(f.alternatives, start=1)]
        return ["That time is taken. The nearest free times are:", *options]
    if f.response_type == "clarification":
        return [f.note or "Which day and time would suit you, and for how long?"]
    return [f.note or "Something went wrong while scheduling; we will look into it."]


def text_body(f: Facts) -> str:
    return "\n".join([*lines(f), "", f"Details: {f.link}"]) + "\n"


def html_body(f: Facts) -> str:
    head, *rest = lines(f)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in rest)
    card = f"<ul>{items}</ul>" if items else ""
    return (f'<div style="font-family:sans-serif;border:1px solid #ddd;border-radius:8px;padding:16px">'
            f"<h2>{html.escape(head)}</h2>{card}"
            f'<p><a href="{html.escape(f.link)}">Open in the app</a></p></div>')


def sms_body(f: Facts) -> str:
    """The whole reply when it fits one SMS, else a short text with the link to the rest."""
    full = " ".join(lines(f))
    if len(full) <= SMS_LIMIT:
        return full
    if f.response_type == "alternatives" and f.alternatives:
        short = f"That time is taken. {len(f.alternatives)} free times to pick from:"
    else:
        short = lines(f)[0][: SMS_LIMIT - len(f.link) - 2]
    return f"{short} {f.link}"


def chat_data(f: Facts) -> dict[str, Any]:
    """Structured for the web app: alternatives as choices it renders as buttons."""
    data: dict[str, Any] = {"type": f.response_type, "taskId": f.task_id, **f.extra}
    if f.event:
        data["event"] = {"id": f.event.id, "title": f.event.title, "startTime": f.event.start.isoformat(),
                         "endTime": f.event.end.isoformat(), "participants": list(f.event.participants)}
    if f.response_type == "alternatives":
        data["choices"] = [{"id": f"slot-{i}", "label": when(s, f.time_zone), "action": "accept_slot",
                            "startTime": s.start.isoformat(), "endTime": s.end.isoformat()}
                           for i, s in enumerate(f.alternatives, start=1)]
        data["choices"].append({"id": "decline", "label": "None of these", "action": "decline"})
    return data


def webhook_data(f: Facts) -> dict[str, Any]:
    data = chat_data(f)
    data["message"] = " ".join(lines(f))
    return data


def invite(f: Facts) -> Invite:
    assert f.event is not None
    e = f.event
    return Invite(event_id=e.id, title=e.title, start=e.start, end=e.end, time_zone=e.time_zone,
                  organizer_email=e.organizer_email, organizer_name=None,
                  attendees=tuple((p, None) for p in e.participants), location=e.location,
                  description=e.description, sequence=e.sequence)
