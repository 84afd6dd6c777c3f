"""The payloads of the notification jobs (app/jobs/notifications.py), here so that any job family
that notifies someone can enqueue them, typed, without importing another family."""

from __future__ import annotations

from typing import Any

from pydantic import Field, HttpUrl

from app.queue.payload import Payload

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"


class Keyed(Payload):
    idempotency_key: str = Field(min_length=1, max_length=300)
    """Sends with the same key happen once, whatever enqueues them and however often."""


class SendEmail(Keyed):
    to: str = Field(pattern=EMAIL_PATTERN)
    to_name: str | None = None
    subject: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1)
    html: str | None = None


class SendSms(Keyed):
    to: str = Field(pattern=E164_PATTERN)
    body: str = Field(min_length=1, max_length=1600)
    link: str | None = None


class SendWebhook(Keyed):
    url: HttpUrl
    event: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = {}


class SendChat(Keyed):
    user_id: str = Field(min_length=1)
    org_id: str | None = None
    body: str = Field(min_length=1)
    data: dict[str, Any] | None = None
