"""Classify a task's message with the model (structured output), falling back to the offline
classifier; and turn the entities into a meeting's time window."""

from __future__ import annotations

import datetime as dt
from typing import Any, get_args

from pydantic import ValidationError

from app.calendar.availability import Interval
from app.calendar.when import zone
from app.jobs.scheduling.classifier import Classification, TaskType, classify_offline, find_emails
from app.providers.openai import OpenAIClient

DEFAULT_DURATION_MIN = 30
MAX_PROMPT_CHARS = 8000

_NULLABLE_STRING = {"type": ["string", "null"]}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "entities", "priority", "confidence"],
    "properties": {
        "type": {"type": "string", "enum": list(get_args(TaskType))},
        "entities": {
            "type": "object",
            "additionalProperties": False,
            "required": ["date", "time", "duration", "participants", "subject", "location", "eventId", "timeZone"],
            "properties": {
                "date": {**_NULLABLE_STRING, "description": "YYYY-MM-DD"},
                "time": {**_NULLABLE_STRING, "description": "HH:MM, 24-hour"},
                "duration": {"type": ["integer", "null"], "description": "minutes"},
                "participants": {"type": "array", "items": {"type": "string"}, "description": "email addresses"},
                "subject": _NULLABLE_STRING,
                "location": _NULLABLE_STRING,
                "eventId": _NULLABLE_STRING,
                "timeZone": {**_NULLABLE_STRING, "description": "IANA zone, only if the message names one"},
            },
        },
        "priority": {"type": "integer", "description": "1 (most urgent) to 5"},
        "confidence": {"type": "number", "description": "0 to 1"},
    },
}

_SYSTEM = (
    "You classify messages sent to a scheduling assistant. Give the request type, the entities "
    "(dates as YYYY-MM-DD and times as HH:MM resolved against the current time given, participants "
    "as email addresses), a priority from 1 (urgent, or very near) to 5, and your confidence from 0 to 1."
)


def accept(data: Any) -> Classification | None:
    try:
        parsed = Classification.model_validate(data)
    except ValidationError:
        return None
    # Only real addresses; the model sometimes lists names.
    emails = [e for e in parsed.entities.participants if find_emails(e) == [e.lower()]]
    return parsed.model_copy(update={"entities": parsed.entities.model_copy(update={"participants": emails})})


async def classify(client: OpenAIClient | None, text: str, *, now: dt.datetime, time_zone: str,
                   attempts: int) -> tuple[Classification, str]:
    """The classification and how it was made: "ai", or "offline" (no model, or no valid answer)."""
    if client is not None:
        local = now.astimezone(zone(time_zone, "UTC"))
        user = f"Current time: {local:%A %Y-%m-%d %H:%M} ({time_zone}).\n\nMessage:\n{text[:MAX_PROMPT_CHARS]}"
        verdict = await client.ask_json(system=_SYSTEM, user=user, schema_name="scheduling_request", schema=SCHEMA,
                                        accept=accept, attempts=attempts)
        if verdict is not None:
            return verdict, "ai"
    return classify_offline(text, now=now, time_zone=time_zone), "offline"


def meeting_window(c: Classification, user_zone: str) -> Interval | None:
    """Pure core: the requested start and end (UTC), when the date and the time are known."""
    e = c.entities
    if not (e.date and e.time):
        return None
    tz = zone(e.time_zone, user_zone)
    start = dt.datetime.combine(dt.date.fromisoformat(e.date), dt.time.fromisoformat(e.time), tzinfo=tz)
    minutes = e.duration or DEFAULT_DURATION_MIN
    return Interval(start.astimezone(dt.UTC), (start + dt.timedelta(minutes=minutes)).astimezone(dt.UTC))
