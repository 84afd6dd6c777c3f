"""Notifications: every message to a person or a system goes through `Notifier.send()`.

One path for all channels (email, SMS, webhook, chat) so each send is recorded under an
idempotency key before it happens (see ledger.py), guarded by its provider's circuit breaker,
counted in metrics, and skipped with a reason when its channel is not configured.
"""

from __future__ import annotations

from typing import Any, Protocol

import asyncpg
import structlog
from redis.asyncio import Redis

from app.config import Settings
from app.metrics import Metrics
from app.notify.chat import ChatChannel
from app.notify.ledger import AlreadySent, Ledger
from app.providers.breakers import Breakers
from app.providers.messages import Attachment, Chat, Delivery, Email, Message, Sms, Webhook
from app.providers.smtp import SmtpChannel
from app.providers.twilio import TwilioChannel
from app.providers.webhook import WebhookChannel

log = structlog.get_logger(__name__)

# Another job's claim older than this is taken over: its sender is gone (timeouts are shorter).
CLAIM_STALE_S = 120.0


class ChannelImpl(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str | None:
        """The circuit breaker this channel's sends count against (None: no external provider)."""

    def unconfigured_reason(self) -> str | None: ...
    async def deliver(self, message: Any, key: str) -> str: ...
    async def aclose(self) -> None: ...


class Notifier:
    def __init__(self, settings: Settings, db: asyncpg.Pool, redis: Redis, breakers: Breakers,
                 metrics: Metrics) -> None:
        self.breakers, self.metrics = breakers, metrics
        self.ledger = Ledger(db, stale_after_s=CLAIM_STALE_S)
        self.channels: dict[str, ChannelImpl] = {
            "email": SmtpChannel(settings.smtp),
            "sms": TwilioChannel(settings.twilio),
            "webhook": WebhookChannel(settings.webhook),
            "chat": ChatChannel(db, redis),
        }

    async def send(self, message: Message, *, key: str, job_id: str) -> Delivery:
        """Send `message` once per `key`: "sent", "duplicate" (sent before) or "skipped"."""
        channel = self.channels[message.channel]
        counter = self.metrics.notifications
        reason = channel.unconfigured_reason()
        if reason is not None:
            skipped_id = await self.ledger.skipped(key, message.channel, message.recipient, reason)
            counter.labels(message.channel, "skipped").inc()
            return Delivery("skipped", skipped_id, reason=reason)
        breaker = self.breakers[channel.provider] if channel.provider else None
        if breaker is not None:
            breaker.before_call()  # an open breaker defers the send before it claims anything
        try:
            claim = await self.ledger.claim(key, message.channel, message.recipient, message.subject, job_id)
        except BaseException as refused:
            if breaker is not None:
                breaker.release()  # nothing went out: a half-open probe slot is free again
            if isinstance(refused, AlreadySent):
                counter.labels(message.channel, "duplicate").inc()
                return Delivery("duplicate", refused.notification_id, reason="already sent")
            raise
        if claim.in_doubt:
            counter.labels(message.channel, "in_doubt_resend").inc()
            log.warning("notification_in_doubt_resend", key=key, channel=message.channel, job_id=job_id)
        try:
            provider_id = await self._deliver(channel, message, key)
        except Exception as exc:
            counter.labels(message.channel, "failed").inc()
            await self.ledger.failed(claim.notification_id, f"{type(exc).__name__}: {exc}")
            raise
        await self.ledger.sent(claim.notification_id, provider_id)
        counter.labels(message.channel, "sent").inc()
        return Delivery("sent", claim.notification_id, provider_id=provider_id)

    async def _deliver(self, channel: ChannelImpl, message: Message, key: str) -> str:
        if channel.provider is None:
            return await channel.deliver(message, key)
        async with self.breakers.outcome(channel.provider):  # before_call() was made in send()
            return await channel.deliver(message, key)

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()


__all__ = ["Attachment", "Chat", "Delivery", "Email", "Message", "Notifier", "Sms", "Webhook"]
