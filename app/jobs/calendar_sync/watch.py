"""Push channels (Google events.watch): opened after a sync, renewed a day before they expire.

Every active connection is synced by the cron at least every 15 minutes, so renewal rides on
the sync: no channel, or one expiring within RENEW_AHEAD, gets a new one (and the old one is
stopped). Only a SHA-256 of the channel token is stored; app/calendar/push.py checks it. A
channel that cannot be opened does not fail the sync: the cron keeps the calendar current.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from app.calendar import connections
from app.calendar.connections import Connection
from app.calendar.push import token_digest
from app.errors import AppError
from app.jobs.resources import Job

RENEW_AHEAD = dt.timedelta(days=1)

Caller = Callable[..., Awaitable[Any]]
"""Access.call: runs a client method with the connection's access token first."""


def due(conn: Connection, now: dt.datetime) -> bool:
    """Whether the connection needs a new channel now."""
    return conn.watch_channel_id is None or conn.watch_expires_at is None or conn.watch_expires_at - now < RENEW_AHEAD


async def ensure(job: Job, call: Caller, conn: Connection) -> str:
    """"off" (CALENDAR_PUSH_URL unset), "current", "renewed" or "failed"."""
    settings, google = job.res.settings, job.res.providers.google
    if settings.calendar.push_url is None or google is None:
        return "off"
    if not due(conn, dt.datetime.now(dt.UTC)):
        return "current"
    channel_id, token = uuid.uuid4().hex, secrets.token_urlsafe(32)
    try:
        channel = await call(google.watch, conn.calendar_id, channel_id=channel_id, channel_token=token,
                             address=settings.calendar.push_url, ttl_s=settings.calendar.watch_ttl_s)
    except AppError as exc:  # not retried: the next sync tries again, and the cron covers meanwhile
        job.log.warning("calendar_watch_failed", connection_id=conn.id, error=str(exc))
        return "failed"
    await connections.store_watch(job.res.db, conn.id, channel_id=channel.channel_id,
                                  resource_id=channel.resource_id, token_sha256=token_digest(token),
                                  expires_at=channel.expires_at)
    job.log.info("calendar_watch_opened", connection_id=conn.id, channel_id=channel_id,
                 expires_at=channel.expires_at.isoformat() if channel.expires_at else None)
    if conn.watch_channel_id and conn.watch_resource_id:
        try:
            await call(google.stop_channel, conn.watch_channel_id, conn.watch_resource_id)
        except AppError as exc:  # it expires on its own; its pushes are refused (unknown channel)
            job.log.info("calendar_watch_stop_failed", connection_id=conn.id, error=str(exc))
    return "renewed"
