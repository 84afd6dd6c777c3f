"""In-app chat: the message is stored, then published on the user's Redis channel for live UIs."""

from __future__ import annotations

import json

import asyncpg
from redis.asyncio import Redis

from app.providers.messages import Chat
from app.queue import keys


class ChatChannel:
    name = "chat"
    provider = None
    """Our own database and Redis: no external provider, no breaker."""

    def __init__(self, db: asyncpg.Pool, redis: Redis) -> None:
        self.db = db
        self.redis = redis

    def unconfigured_reason(self) -> str | None:
        return None

    async def deliver(self, message: Chat, key: str) -> str:
        row = await self.db.fetchrow(
            "INSERT INTO chat_messages (org_id, user_id, body, data) VALUES ($1, $2, $3, $4::text::jsonb)"
            " RETURNING id, created_at",
            message.org_id, message.user_id, message.body, json.dumps(message.data or {}))
        assert row is not None
        event = {"id": row["id"], "userId": message.user_id, "orgId": message.org_id, "body": message.body,
                 "data": message.data or {}, "createdAt": row["created_at"].isoformat(), "key": key}
        # Publishing is best effort for live sessions; the stored row is the message.
        await self.redis.publish(keys.chat_channel(message.user_id), json.dumps(event))
        return f"chat:{row['id']}"

    async def aclose(self) -> None:
        return None
