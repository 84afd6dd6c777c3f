"""What a message asks for, and its entities: the shared schema, and the offline classifier.

The schema (`Classification`) is what the model must answer and what the offline classifier
produces. The offline classifier, used when no model is configured or the model's answers stay
malformed, is rules plus dateparser: dates such as "next Tuesday" are resolved against "now" in
the user's time zone (passed in, so it is deterministic), times and durations by pattern. Its
confidence is honest: at most 0.8, and below the review threshold when the date or time is
missing. Dates and times are the wall clock of `entities.timeZone` when the message names a zone,
else of the user's zone.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import dateparser  # type: ignore[import-untyped]  # dateparser ships no type information
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.calendar.when import zone

TaskType = Literal["SCHEDULE_MEETING", "RESCHEDULE_MEETING", "CANCEL_MEETING", "CHECK_AVAILABILITY", "CREATE_TASK",
                   "UPDATE_TASK", "INQUIRY", "REMINDER", "UNKNOWN"]
OFFLINE_MAX_CONFIDENCE = 0.8


class Entities(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, frozen=True)

    date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    time: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    duration: int | None = Field(None, ge=5, le=1440, description="minutes")
    participants: list[str] = Field(default_factory=list, max_length=50)
    subject: str | None = Field(None, max_length=200)
    location: str | None = Field(None, max_length=200)
    event_id: str | None = Field(None, max_length=200)
    time_zone: str | None = Field(None, max_length=64, description="IANA zone the message states a time in")


class Classification(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: TaskType
    entities: Entities
    priority: int = Field(ge=1, le=5, description="1 is the most urgent")
    confidence: float = Field(ge=0, le=1)


_RULE_TEXT: tuple[tuple[TaskType, str], ...] = (
    ("CANCEL_MEETING", r"\b(cancel\w*|call(?:ing)? off|can(?:no|')t make it)\b"),
    ("RESCHEDULE_MEETING", r"\b(reschedul\w*|move|moving|push(?:ed)? (?:it )?back|postpone\w*|"
                           r"change the time|another time|different time)\b"),
    ("REMINDER", r"\bremind(?:er)?\b"),
    ("CHECK_AVAILABILITY", r"\b((?:are|is|am) (?:you|he|she|they|we|i|\w+) (?:free|available)|availability|"
                           r"free slots?|when (?:are|is) \w+ free|what times? work)\b"),
    ("SCHEDULE_MEETING", r"\b(meet|meeting|call|sync|catch[ -]up|schedule|book|appointment|demo|interview|"
                         r"lunch|coffee|1:1|one-on-one)\b"),
    ("UPDATE_TASK", r"\b(mark (?:the |my )?(?:task )?.{0,40}(?:done|complete[d]?)|update the task|"
                    r"change the (?:due date|deadline))\b"),
    ("CREATE_TASK", r"\b(add a task|create a task|new task|to-?do|please (?:prepare|draft|review|send)|"
                    r"follow up on)\b"),
    ("INQUIRY", r"(\?\s*$|^\s*(what|how|why|who|where|do you|can you tell)\b)"),
)
_RULES = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in _RULE_TEXT)

_BASE: dict[TaskType, float] = {
    "SCHEDULE_MEETING": 0.5, "RESCHEDULE_MEETING": 0.55, "CANCEL_MEETING": 0.6, "CHECK_AVAILABILITY": 0.55,
    "CREATE_TASK": 0.6, "UPDATE_TASK": 0.55, "INQUIRY": 0.5, "REMINDER": 0.6, "UNKNOWN": 0.2,
}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_WEEKDAY = r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|rsday|urday)?"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE_PHRASES = tuple(re.compile(p, re.I) for p in (
    r"\b\d{4}-\d{2}-\d{2}\b",
    r"\bday after tomorrow\b",
    r"\b(?:today|tonight|tomorrow)\b",
    rf"\b(?:(?:next|this|coming)\s+)?{_WEEKDAY}\b",
    r"\bin (?:\d+|a|an|one|two|three|four|five|six|seven) (?:days?|weeks?)\b",
    rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:\s+\d{{4}})?\b",
))
_TIME_12H = re.compile(r"\b(\d{1,2})(?:[:.](\d{2}))?\s*([ap])\.?m\b\.?", re.I)
_TIME_24H = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_TIME_AT = re.compile(r"\bat (\d{1,2})(?:\s*o'?clock)?\b(?![:./\d]|\s*[ap]\.?m)", re.I)
_NOON = re.compile(r"\b(noon|midday)\b", re.I)
_WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_DURATIONS: tuple[tuple[re.Pattern[str], float | None], ...] = (
    (re.compile(r"\b(?:an?|one) hour and a half\b|\b1\.5 ?h(?:ours?|rs?)?\b|\b90[- ]?min", re.I), 90),
    (re.compile(r"\bhalf an hour\b|\bhalf-hour\b", re.I), 30),
    (re.compile(r"\b(?:for )?(?:an|one) hour\b|\bhour[- ]long\b", re.I), 60),
    (re.compile(r"\b(\d+|two|three|four)[- ]?(?:hours?|hrs?|h)\b(?! ago)", re.I), 60),
    (re.compile(r"\b(\d+)[- ]?(?:minutes?|mins?|m)\b", re.I), None),
)
_ZONES = {"UTC": "UTC", "GMT": "UTC", "EST": "America/New_York", "EDT": "America/New_York",
          "ET": "America/New_York", "CST": "America/Chicago", "CDT": "America/Chicago", "CT": "America/Chicago",
          "MST": "America/Denver", "MDT": "America/Denver", "PST": "America/Los_Angeles",
          "PDT": "America/Los_Angeles", "PT": "America/Los_Angeles", "CET": "Europe/Paris", "CEST": "Europe/Paris",
          "BST": "Europe/London", "IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "AEST": "Australia/Sydney"}
_ZONE_ABBR = re.compile(r"\b(" + "|".join(_ZONES) + r")\b")
_ZONE_WORDS = re.compile(r"\b(eastern|central|mountain|pacific) time\b", re.I)
_ZONE_IANA = re.compile(r"\b([A-Z][a-z]+/[A-Z][A-Za-z_]+)\b")
_SUBJECT = re.compile(r"\b(?:about|to discuss|regarding|re:)\s+(?:the\s+|our\s+)?(.{3,80}?)"
                      r"(?=\s+(?:on|at|with|for|next|this|tomorrow|today|in|before|after)\b|[.,;?!\n]|$)", re.I)
_LOCATION = (
    re.compile(r"\b(?:on|via|over|using) (zoom|google meet|teams|skype|the phone)\b", re.I),
    re.compile(r"\b(?:in|at) ((?:the )?(?:conference )?room [\w-]+|the office|our office|the cafeteria)\b", re.I),
)
_EVENT_ID = re.compile(r"\b(evt_[A-Za-z0-9_-]+)\b|\b(?:event|meeting) (?:id )?#([A-Za-z0-9_-]+)", re.I)
_URGENT = re.compile(r"\b(urgent\w*|asap|as soon as possible|emergency|immediately|critical)\b", re.I)
_SOON = re.compile(r"\b(important|soon|priority|quickly)\b", re.I)
_RELAXED = re.compile(r"\b(no rush|no hurry|whenever|low priority)\b", re.I)


def classify_offline(text: str, *, now: dt.datetime, time_zone: str) -> Classification:
    """Pure core: the type, entities, priority and confidence of `text` as of `now`."""
    text = text.replace("\x00", " ")[:10_000]
    kind: TaskType = next((t for t, pattern in _RULES if pattern.search(text)), "UNKNOWN")
    today = now.astimezone(zone(time_zone, "UTC")).replace(tzinfo=None)
    entities = Entities(date=find_date(text, today), time=find_time(text), duration=find_duration(text),
                        participants=find_emails(text), subject=_first(_SUBJECT, text),
                        location=_location(text), event_id=_event_id(text), time_zone=find_zone(text))
    return Classification(type=kind, entities=entities, priority=priority(text, entities.date, today.date()),
                          confidence=confidence(kind, entities))


def find_emails(text: str) -> list[str]:
    return list(dict.fromkeys(m.lower() for m in _EMAIL.findall(text)))


def find_date(text: str, local_now: dt.datetime) -> str | None:
    """The first date phrase, resolved by dateparser against the user's local "now"."""
    clean = _EMAIL.sub(" ", text)
    found = [(m.start(), m.group(0)) for p in _DATE_PHRASES for m in p.finditer(clean)]
    for _, phrase in sorted(found):
        parsed = dateparser.parse(phrase.replace("tonight", "today"), languages=["en"],
                                  settings={"RELATIVE_BASE": local_now, "PREFER_DATES_FROM": "future"})
        if parsed is not None:
            return str(parsed.date().isoformat())
    return None


def find_time(text: str) -> str | None:
    clean = _EMAIL.sub(" ", text)
    if m := _TIME_12H.search(clean):
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if 1 <= hour <= 12 and minute < 60:
            hour = hour % 12 + (12 if m.group(3).lower() == "p" else 0)
            return f"{hour:02d}:{minute:02d}"
    if m := _TIME_24H.search(clean):
        hour = int(m.group(1))
        return f"{_business_hour(hour) if hour <= 12 else hour:02d}:{m.group(2)}"
    if _NOON.search(clean):
        return "12:00"
    if (m := _TIME_AT.search(clean)) and 1 <= int(m.group(1)) <= 12:
        return f"{_business_hour(int(m.group(1))):02d}:00"
    return None


def _business_hour(hour: int) -> int:
    """A bare "at 2" or "2:30" in a working day means 14:00 / 14:30; "at 9" means 09:00."""
    return hour + 12 if 1 <= hour <= 7 else hour


def find_duration(text: str) -> int | None:
    """Minutes: fixed phrases ("half an hour"), else a number of hours or minutes."""
    for pattern, minutes in _DURATIONS:
        m = pattern.search(text)
        if m is None:
            continue
        if minutes is not None and not m.groups():
            return int(minutes)
        amount = m.group(1).lower()
        total = (_WORD_NUMBERS[amount] if amount in _WORD_NUMBERS else int(amount)) * int(minutes or 1)
        return total if 5 <= total <= 1440 else None
    return None


def find_zone(text: str) -> str | None:
    if m := _ZONE_IANA.search(text):
        name = str(zone(m.group(1), ""))
        if name == m.group(1):
            return name
    if m := _ZONE_ABBR.search(text):
        return _ZONES[m.group(1)]
    if m := _ZONE_WORDS.search(text):
        return _ZONES[m.group(1)[0].upper() + "T"]
    return None


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m.group(1).strip() if m else None


def _location(text: str) -> str | None:
    for pattern in _LOCATION:
        if m := pattern.search(text):
            value = m.group(1)
            return value.title() if value.islower() else value
    return None


def _event_id(text: str) -> str | None:
    m = _EVENT_ID.search(text)
    return (m.group(1) or m.group(2)) if m else None


def priority(text: str, date: str | None, today: dt.date) -> int:
    """1 (most urgent) to 5: urgency words first, then how near the date is."""
    if _URGENT.search(text):
        return 1
    if _RELAXED.search(text):
        return 5
    days = (dt.date.fromisoformat(date) - today).days if date else None
    if _SOON.search(text) or (days is not None and days <= 1):
        return 2
    if days is None or days <= 7:
        return 3
    return 4


def confidence(kind: TaskType, e: Entities) -> float:
    """The rules' certainty: the type's base, plus what the request needs and was found."""
    score = _BASE[kind]
    if kind in ("SCHEDULE_MEETING", "RESCHEDULE_MEETING"):
        score += 0.12 * bool(e.date) + 0.12 * bool(e.time) + 0.06 * bool(e.participants or e.duration)
    elif kind == "CANCEL_MEETING":
        score += 0.15 * bool(e.date or e.event_id or e.subject or e.participants)
    elif kind == "CHECK_AVAILABILITY":
        score += 0.15 * bool(e.date)
    return round(min(score, OFFLINE_MAX_CONFIDENCE), 2)
