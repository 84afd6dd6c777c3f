"""Google's push notifications for events.watch channels: verify, then enqueue an incremental sync.

Google POSTs an empty body with X-Goog-* headers whenever a watched calendar changes, so a
change arrives in seconds instead of at the next cron tick. The channel token is compared
(in constant time) with the SHA-256 stored when the channel was opened. Google retries only
500/502/503/504, so a refusal is a 4xx and a success is 200 whatever happened after the check.

`handle_push(res, headers)` is the whole handler; the sidecar mounts it as e.g.
`POST /api/v1/calendar/push` and returns `reply.status` with `reply.reason`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from app.calendar import connections
from app.queue.resources import EngineResources

_MAX_HEADER_CHARS = 256


@dataclass(frozen=True, slots=True)
class PushReply:
    status: int
    reason: str
    job_id: str | None = None


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def handle_push(res: EngineResources, headers: Mapping[str, str]) -> PushReply:
    """Answer one push notification; enqueue an incremental sync for a verified change."""
    h = {k.lower(): v for k, v in headers.items()}
    channel_id, token = _header(h, "x-goog-channel-id"), _header(h, "x-goog-channel-token")
    state = _header(h, "x-goog-resource-state")
    if channel_id is None or token is None or state is None:
        return PushReply(400, "missing or malformed X-Goog-Channel-ID, -Token or X-Goog-Resource-State")
    found = await connections.find_by_channel(res.db, channel_id)
    if found is None:
        return PushReply(404, "unknown channel")
    conn, digest = found
    resource_id = _header(h, "x-goog-resource-id")
    if (digest is None or not hmac.compare_digest(token_digest(token), digest)
            or (resource_id is not None and resource_id != conn.watch_resource_id)):
        return PushReply(403, "channel token does not match")
    if state == "sync":
        return PushReply(200, "channel confirmed")
    if not conn.is_active:
        return PushReply(200, "connection inactive")
    job_id = connections.sync_job_id(conn.id, full=False)
    enqueued = await res.enqueuer.enqueue(
        "sync_calendar", {"connectionId": conn.id, "userId": conn.user_id, "syncType": "incremental"},
        job_id=job_id, replace_result=True)
    return PushReply(200, "sync enqueued" if enqueued else "sync already queued", job_id)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if not value or len(value) > _MAX_HEADER_CHARS or any(ord(ch) < 32 for ch in value):
        return None
    return value
