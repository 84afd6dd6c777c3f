"""What can be sent: one small value type per channel, built by jobs and handed to `send()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Channel = Literal["email", "sms", "webhook", "chat"]


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str
    """e.g. "text/calendar; method=REQUEST" for an invitation."""


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str | None = None
    to_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    channel: Channel = field(default="email", init=False)

    @property
    def recipient(self) -> str:
        return self.to


@dataclass(frozen=True, slots=True)
class Sms:
    to: str
    """E.164 number, e.g. +14155550100."""
    body: str
    link: str | None = None
    """Where the full text lives; kept whole when the body has to be trimmed."""
    channel: Channel = field(default="sms", init=False)

    @property
    def recipient(self) -> str:
        return self.to

    subject = None


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    event: str
    data: dict[str, Any]
    channel: Channel = field(default="webhook", init=False)

    @property
    def recipient(self) -> str:
        return self.url

    @property
    def subject(self) -> str:
        return self.event


@dataclass(frozen=True, slots=True)
class Chat:
    user_id: str
    body: str
    org_id: str | None = None
    data: dict[str, Any] | None = None
    channel: Channel = field(default="chat", init=False)

    @property
    def recipient(self) -> str:
        return self.user_id

    subject = None


Message = Email | Sms | Webhook | Chat


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one send() call."""

    status: Literal["sent", "duplicate", "skipped"]
    notification_id: int | None = None
    provider_id: str | None = None
    reason: str | None = None
    """Why a send was skipped (channel not configured) or refused (already sent)."""
