"""Idempotency-Key for POST /jobs: the same key within 24 h returns the first response and
enqueues nothing.

The first request claims the key with SET NX (a short-lived "pending" marker), enqueues, then
stores its response under the key for IDEMPOTENCY_TTL_S. A request arriving while the first is
still being answered gets 409 and may retry. A request that fails (invalid body, Redis away)
releases the key, so the client can correct it and send it again. The same key with another body
is refused (422), as Stripe does. Jobs without their own `jobId` get ids derived from the key, so
even a response lost after the enqueue (the process died) cannot double a job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from redis.asyncio import Redis

from app.queue import keys
from app.web.api.errors import ApiError

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL_S = 86_400
PENDING_TTL_S = 60
"""How long a claim without a stored response holds the key (the request died meanwhile)."""
MAX_KEY_CHARS = 255
# The lead keeps every other Redis key in app/queue/keys.py; this one is the API's alone.
_KEY_PREFIX = keys.IDEMPOTENCY_PREFIX


def read_key(value: str | None) -> str | None:
    """The header's key, or None; 400 naming the header for one that is empty, long or not printable ASCII."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_CHARS or not all(32 < ord(ch) < 127 for ch in value):
        raise ApiError(400, "invalid_header", f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
                       {HEADER: f"1 to {MAX_KEY_CHARS} printable ASCII characters, no spaces"})
    return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def derived_job_ids(key: str, count: int) -> list[str]:
    """Ids for the jobs of a request under `key`: `idem-<hash>` for one job, `-<n>` added in a list."""
    base = "idem-" + _digest("job-id:" + key)[:32]
    return [base] if count == 1 else [f"{base}-{n}" for n in range(count)]


def fingerprint(body: Any) -> str:
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


class IdempotencyStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def claim(self, key: str, print_: str) -> dict[str, Any] | None:
        """None: this request now holds `key` and must answer; else the first request's stored response."""
        name = _KEY_PREFIX + _digest(key)
        pending = json.dumps({"fingerprint": print_, "pending": True})
        for _ in range(3):  # the key may expire between SET NX and GET
            if await self.redis.set(name, pending, nx=True, ex=PENDING_TTL_S):
                return None
            raw = await self.redis.get(name)
            if raw is not None:
                return _stored(json.loads(raw), print_)
        raise ApiError(409, "idempotency_key_in_use", f"{HEADER} {key!r} is changing hands; retry",
                       headers={"Retry-After": "1"})

    async def store(self, key: str, print_: str, response: dict[str, Any]) -> None:
        value = json.dumps({"fingerprint": print_, "response": response})
        await self.redis.set(_KEY_PREFIX + _digest(key), value, ex=IDEMPOTENCY_TTL_S)

    async def release(self, key: str) -> None:
        await self.redis.delete(_KEY_PREFIX + _digest(key))


def _stored(stored: dict[str, Any], print_: str) -> dict[str, Any]:
    if stored.get("fingerprint") != print_:
        raise ApiError(422, "idempotency_key_reused",
                       f"this {HEADER} was used within 24 h for a different body; use a new key",
                       {HEADER: "already used for a different body"})
    if stored.get("pending"):
        raise ApiError(409, "idempotency_key_in_use",
                       f"a request with this {HEADER} is still being answered; retry", headers={"Retry-After": "1"})
    response: dict[str, Any] = stored["response"]
    return response
