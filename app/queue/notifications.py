"""Keyspace notifications: how a stock arq client's enqueue wakes a worker at once.

arq's `enqueue_job` writes the job and ZADDs its id to the queue, and announces nothing: found by
the fallback sweep alone, its jobs would start up to a second late. Redis can announce it: with
`notify-keyspace-events` holding K (keyspace channels) and z (sorted-set commands), a ZADD on a
queue is published on `__keyspace@<db>__:<queue>` as "zadd", which the wake hub listens to
(app/queue/wake.py), as it does for `Job.abort()`'s ZADD to arq's abort set.

REDIS_KEYSPACE_NOTIFICATIONS says what Workhorse may do: `enable` (the default) adds K and z to the
server's flags when they are missing (never removing one; where CONFIG is refused — managed Redis
whose parameter group sets it, CONFIG renamed or denied by an ACL — it says so in one log line and
in /health/detailed, and the sweep remains); `use` only listens, leaving the server's configuration
to its operator; `off` does neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

Mode = Literal["enable", "use", "off"]
_PARAMETER = "notify-keyspace-events"


@dataclass(frozen=True, slots=True)
class KeyspaceNotifications:
    """Whether the server announces ZADDs on the queues, and why (for logs and /health/detailed)."""

    on: bool
    detail: str


OFF = KeyspaceNotifications(False, "REDIS_KEYSPACE_NOTIFICATIONS=off")


def covers(flags: str) -> bool:
    """Whether `flags` publish sorted-set commands on keyspace channels (`A` stands for `g$lshzxetd`)."""
    return "K" in flags and ("z" in flags or "A" in flags)


async def ensure(redis: Redis, mode: Mode) -> KeyspaceNotifications:
    """What the server does now, after turning the flags on if `mode` allows and they are missing."""
    if mode == "off":
        return OFF
    try:
        reply = await redis.config_get(_PARAMETER)
    except ResponseError as exc:
        return KeyspaceNotifications(False, f"CONFIG GET refused ({exc}); stock arq clients' jobs wait for the sweep")
    value = next(iter(reply.values()), b"")
    flags = value.decode() if isinstance(value, bytes) else str(value)
    if covers(flags):
        return KeyspaceNotifications(True, f"on ({_PARAMETER} {flags!r})")
    if mode == "use":
        return KeyspaceNotifications(False, f"{_PARAMETER} is {flags!r}, without K and z, and "
                                            "REDIS_KEYSPACE_NOTIFICATIONS=use leaves it; stock arq clients' jobs "
                                            "wait for the sweep")
    wanted = flags + "".join(f for f in "Kz" if f not in flags)
    try:
        await redis.config_set(_PARAMETER, wanted)
    except ResponseError as exc:
        return KeyspaceNotifications(False, f"CONFIG SET {_PARAMETER} refused ({exc}); set it to include 'Kz' on "
                                            "the server, or stock arq clients' jobs wait for the sweep")
    return KeyspaceNotifications(True, f"turned on ({_PARAMETER} {flags!r} -> {wanted!r})")
