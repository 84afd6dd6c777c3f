"""The offline classifier (rules plus dateparser) and the free-slot search: pure cores as tables.

"Now" is injected: Thursday 5 March 2026, 15:00 UTC — 16:00 in Berlin, already Friday 00:00 in
Tokyo, still Thursday 07:00 in Los Angeles — so relative dates resolve in the user's own zone.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.calendar.availability import Interval, WorkingHours, free_slots
from app.jobs.scheduling.classifier import classify_offline
from app.jobs.scheduling.retry import retry_delay_s
from app.jobs.scheduling.understand import accept, meeting_window

NOW = dt.datetime(2026, 3, 5, 15, 0, tzinfo=dt.UTC)
B = "Europe/Berlin"

# (zone, message, type, date, time, duration, participants, subject, location, eventId, timeZone, priority)
CASES = [
    (B, "can we meet Tuesday at 2pm with ana@example.com for an hour?",
     "SCHEDULE_MEETING", "2026-03-10", "14:00", 60, ["ana@example.com"], None, None, None, None, 3),
    (B, "Let's schedule a call tomorrow at 10:30 with bob@acme.io and Carol@Acme.io to discuss the Q3 budget.",
     "SCHEDULE_MEETING", "2026-03-06", "10:30", None, ["bob@acme.io", "carol@acme.io"], "Q3 budget", None, None,
     None, 2),
    (B, "Could you book a 45 minute demo on March 12th at 3 pm with lead@prospect.com on Zoom?",
     "SCHEDULE_MEETING", "2026-03-12", "15:00", 45, ["lead@prospect.com"], None, "Zoom", None, None, 3),
    ("America/New_York", "Meeting with dana@corp.com next Monday at 9am in conference room B, 30 min",
     "SCHEDULE_MEETING", "2026-03-09", "09:00", 30, ["dana@corp.com"], None, "conference room B", None, None, 3),
    ("Asia/Tokyo", "Can we do coffee tomorrow at noon?",
     "SCHEDULE_MEETING", "2026-03-07", "12:00", None, [], None, None, None, None, 2),
    (B, "URGENT: need a call with cto@x.com today at 5pm for half an hour",
     "SCHEDULE_MEETING", "2026-03-05", "17:00", 30, ["cto@x.com"], None, None, None, None, 1),
    (B, "Please set up a sync on 2026-03-20 at 14:00 about the roadmap, 2 hours",
     "SCHEDULE_MEETING", "2026-03-20", "14:00", 120, [], "roadmap", None, None, None, 4),
    (B, "Lunch on Friday at 12:30 with eve@example.org?",
     "SCHEDULE_MEETING", "2026-03-06", "12:30", None, ["eve@example.org"], None, None, None, None, 2),
    (B, "Let's meet in 2 weeks at 4pm EST with frank@example.com",
     "SCHEDULE_MEETING", "2026-03-19", "16:00", None, ["frank@example.com"], None, None, None, "America/New_York", 4),
    (B, "Can we catch up on the 14 March at 11am Europe/London time?",
     "SCHEDULE_MEETING", "2026-03-14", "11:00", None, [], None, None, None, "Europe/London", 4),
    ("America/Los_Angeles", "Book an appointment for the day after tomorrow at 8:15 am with gina@health.org",
     "SCHEDULE_MEETING", "2026-03-07", "08:15", None, ["gina@health.org"], None, None, None, None, 3),
    (B, "Quick sync this Friday at 9 with hank@example.com, important",
     "SCHEDULE_MEETING", "2026-03-06", "09:00", None, ["hank@example.com"], None, None, None, None, 2),
    (B, "I need to reschedule our meeting evt_abc123 to Wednesday at 3pm",
     "RESCHEDULE_MEETING", "2026-03-11", "15:00", None, [], None, None, "evt_abc123", None, 3),
    (B, "Could we move the call with bob@acme.io to next Friday at 10?",
     "RESCHEDULE_MEETING", "2026-03-06", "10:00", None, ["bob@acme.io"], None, None, None, None, 2),
    (B, "Please cancel my meeting tomorrow with bob@acme.io",
     "CANCEL_MEETING", "2026-03-06", None, None, ["bob@acme.io"], None, None, None, None, 2),
    (B, "Sorry, I can't make it to the interview on Monday, meeting #evt_77 is off",
     "CANCEL_MEETING", "2026-03-09", None, None, [], None, None, "evt_77", None, 3),
    (B, "Are you free on March 12th?",
     "CHECK_AVAILABILITY", "2026-03-12", None, None, [], None, None, None, None, 3),
    (B, "What's your availability next Tuesday for a 90 minute workshop?",
     "CHECK_AVAILABILITY", "2026-03-10", None, 90, [], None, None, None, None, 3),
    (B, "Remind me to send the invoice on Friday",
     "REMINDER", "2026-03-06", None, None, [], None, None, None, None, 2),
    (B, "Add a task: prepare the slides for the board, no rush",
     "CREATE_TASK", None, None, None, [], None, None, None, None, 5),
    (B, "Mark the onboarding checklist task as done",
     "UPDATE_TASK", None, None, None, [], None, None, None, None, 3),
    (B, "What are your pricing plans?",
     "INQUIRY", None, None, None, [], None, None, None, None, 3),
    (B, "Thanks, sounds good!",
     "UNKNOWN", None, None, None, [], None, None, None, None, 3),
]


@pytest.mark.parametrize(("zone", "message", "kind", "date", "time", "duration", "participants", "subject",
                          "location", "event_id", "time_zone", "priority"), CASES)
def test_offline_classifier_finds_type_and_every_entity(
        zone: str, message: str, kind: str, date: str | None, time: str | None, duration: int | None,
        participants: list[str], subject: str | None, location: str | None, event_id: str | None,
        time_zone: str | None, priority: int) -> None:
    """Each message's type, every entity (relative dates in the user's zone) and priority."""
    c = classify_offline(message, now=NOW, time_zone=zone)
    e = c.entities
    assert (c.type, e.date, e.time, e.duration, e.participants, e.subject, e.location, e.event_id, e.time_zone,
            c.priority) == (kind, date, time, duration, participants, subject, location, event_id, time_zone, priority)


@pytest.mark.parametrize(("message", "at_least", "below"), [
    ("can we meet Tuesday at 2pm with ana@example.com for an hour?", 0.7, 0.81),
    ("can we meet sometime?", 0.0, 0.7),
    ("Let's meet Tuesday", 0.0, 0.7),
    ("Thanks, sounds good!", 0.0, 0.3),
])
def test_offline_confidence_is_honest(message: str, at_least: float, below: float) -> None:
    """Complete requests reach the threshold but never above 0.8; missing time or date stays below it."""
    assert at_least <= classify_offline(message, now=NOW, time_zone=B).confidence < below


def test_nul_characters_and_huge_messages_are_classified_without_error() -> None:
    """NUL bytes are blanks and only the first 10,000 characters are read."""
    c = classify_offline("meet\x00 Tuesday at 2pm " + "x" * 1_000_000, now=NOW, time_zone=B)
    assert (c.type, c.entities.date, c.entities.time) == ("SCHEDULE_MEETING", "2026-03-10", "14:00")


def test_meeting_window_uses_the_stated_zone_else_the_users() -> None:
    """"4pm EST" is 21:00 UTC; without a zone, 14:00 in Berlin (CET) is 13:00 UTC; default 30 min."""
    stated = classify_offline("meet in 2 weeks at 4pm EST for an hour", now=NOW, time_zone=B)
    assert meeting_window(stated, B) == Interval(dt.datetime(2026, 3, 19, 20, tzinfo=dt.UTC),
                                                 dt.datetime(2026, 3, 19, 21, tzinfo=dt.UTC))
    local = classify_offline("meet Tuesday at 2pm", now=NOW, time_zone=B)
    assert meeting_window(local, B) == Interval(dt.datetime(2026, 3, 10, 13, tzinfo=dt.UTC),
                                                dt.datetime(2026, 3, 10, 13, 30, tzinfo=dt.UTC))


def test_model_answers_are_validated_against_the_schema() -> None:
    """A valid answer is kept (names dropped from participants); a wrong type or range is refused."""
    good = {"type": "SCHEDULE_MEETING", "priority": 2, "confidence": 0.9,
            "entities": {"date": "2026-03-10", "time": "14:00", "duration": 60, "participants": ["ana@example.com",
                         "Ana"], "subject": None, "location": None, "eventId": None, "timeZone": None}}
    parsed = accept(good)
    assert parsed is not None and parsed.entities.participants == ["ana@example.com"]
    assert accept({**good, "type": "DANCE"}) is None
    assert accept({**good, "confidence": 7}) is None
    assert accept({**good, "entities": {**good["entities"], "time": "2pm"}}) is None  # type: ignore[dict-item]
    assert accept("not an object") is None


def utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=ZoneInfo(B)).astimezone(dt.UTC)


def slot(day: int, hour: int, minute: int = 0, minutes: int = 60) -> Interval:
    return Interval(utc(day, hour, minute), utc(day, hour, minute) + dt.timedelta(minutes=minutes))


HOURS = WorkingHours(time_zone=B)

# (requested, busy, now, working hours, the expected alternatives in order). Times are Berlin's;
# 9-13 March 2026 is Monday to Friday.
SLOT_CASES = [
    pytest.param(slot(10, 14), [slot(10, 13, minutes=180), slot(11, 9, minutes=480)], utc(9, 9), HOURS,
                 [slot(10, 12), slot(10, 16), slot(10, 11, 30), slot(10, 11), slot(10, 10, 30)],
                 id="same-day-both-sides-nearest-first-ties-earlier"),
    pytest.param(slot(13, 16), [slot(13, 9, minutes=480)], utc(9, 9), HOURS,
                 [slot(16, 9), slot(16, 9, 30), slot(16, 10), slot(16, 10, 30), slot(16, 11)],
                 id="friday-full-skips-the-weekend-to-monday-morning"),
    pytest.param(slot(10, 10), [slot(10, 10)], utc(10, 9, 45), HOURS,
                 [slot(10, 11), slot(10, 11, 30), slot(10, 12), slot(10, 12, 30), slot(10, 13)],
                 id="never-in-the-past"),
    pytest.param(slot(10, 9, minutes=90), [slot(10, 9, minutes=60)], utc(9, 9),
                 WorkingHours(time_zone=B, start=dt.time(8), end=dt.time(12), days=frozenset({2, 3})),
                 [slot(10, 10, minutes=90), slot(10, 10, 30, minutes=90), slot(11, 8, minutes=90),
                  slot(11, 8, 30, minutes=90), slot(11, 9, minutes=90)],
                 id="own-hours-and-days-same-duration"),
    pytest.param(slot(10, 14), [Interval(utc(10, 0), utc(17, 23))], utc(9, 9), HOURS, [],
                 id="a-busy-week-offers-nothing"),
]


@pytest.mark.parametrize(("wanted", "busy", "now", "hours", "expected"), SLOT_CASES)
def test_free_slots_are_the_five_nearest_inside_working_hours(
        wanted: Interval, busy: list[Interval], now: dt.datetime, hours: WorkingHours,
        expected: list[Interval]) -> None:
    """Exactly these alternatives, in this order."""
    assert free_slots(wanted, busy, hours, now=now) == expected


@pytest.mark.parametrize(("previous", "delay_s"), [(0, 0), (1, 5), (2, 10), (11, 55), (12, 60), (50, 60)])
def test_retry_delay_grows_by_five_seconds_up_to_a_minute(previous: int, delay_s: float) -> None:
    """min(previousAttempts x 5 s, 60 s)."""
    assert retry_delay_s(previous) == delay_s
