"""The scheduling agent's payloads, as the web app sends them (runbook section 4.7)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, model_validator

from app.queue.payload import Payload

EMAIL = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
ID = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
ResponseType = Literal["confirmation", "alternatives", "clarification", "error", "cancellation"]
Channel = Literal["email", "sms", "chat", "webhook"]


class ProcessInbox(Payload):
    task_id: str = ID
    user_id: str = ID
    org_id: str | None = None
    priority: int | None = Field(None, ge=1, le=5)


class SchedulingData(Payload):
    title: str = Field(min_length=1, max_length=300, pattern=r"^[^\x00]+$")
    start_time: dt.datetime
    end_time: dt.datetime
    """ISO 8601; without an offset, the user's time zone."""
    participants: list[str] = Field(default_factory=list, max_length=50)
    location: str | None = Field(None, max_length=300)
    description: str | None = Field(None, max_length=5000)

    @model_validator(mode="after")
    def _valid(self) -> SchedulingData:
        if self.end_time <= self.start_time:
            raise ValueError("endTime must be after startTime")
        if (self.end_time - self.start_time) > dt.timedelta(days=1):
            raise ValueError("a meeting lasts at most 24 hours")
        for email in self.participants:
            if "@" not in email or "\x00" in email or len(email) > 320:
                raise ValueError(f"participant {email[:50]!r} is not an email address")
        return self


class ScheduleMeeting(Payload):
    task_id: str = ID
    user_id: str = ID
    scheduling_data: SchedulingData
    check_conflicts: bool = True


class RescheduleMeeting(Payload):
    task_id: str = ID
    user_id: str = ID
    event_id: str = ID
    start_time: dt.datetime
    end_time: dt.datetime


class CancelMeeting(Payload):
    task_id: str = ID
    user_id: str = ID
    event_id: str = ID


class SendResponse(Payload):
    task_id: str = ID
    user_id: str = ID
    response_type: ResponseType
    channel: Channel
    recipient_email: str | None = Field(None, pattern=EMAIL, max_length=320)
    recipient_phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")
    webhook_url: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None


class RetryTask(Payload):
    task_id: str = ID
    user_id: str = ID
    reason: str = Field("", max_length=2000)
    previous_attempts: int = Field(ge=0, le=1000)
