"""Lua scripts, called by their SHA1 straight through the client.

redis-py's `Script` wraps each call in a copy of its arguments, a late import and the `evalsha`
command method before reaching the client: a few tens of microseconds per call, cold, on paths
(an enqueue, a claim, a finish) that run for every job. This calls `EVALSHA` directly, and
`EVAL` once when Redis has forgotten the script (a restart, `SCRIPT FLUSH`), which caches it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Arg = str | bytes | int | float


class LuaScript:
    __slots__ = ("_redis", "_sha", "_source")

    def __init__(self, redis: Redis, source: str) -> None:
        self._redis, self._source = redis, source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        # execute_command is unannotated in redis-py.
        try:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", self._source, len(keys), *keys, *args)
