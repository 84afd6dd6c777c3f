"""Lua scripts, called by their SHA1 straight through the client.

redis-py's `Script` wraps each call in a copy of its arguments, a late import and the `evalsha`
command method before reaching the client: a few tens of microseconds per call, cold, on paths
(an enqueue, a claim, a finish) that run for every job. This calls `EVALSHA` directly — through
the pool's script channel (app/queue/channel.py) when it has one, as the engine's pools do — and
`EVAL` once when Redis has forgotten the script (a restart, `SCRIPT FLUSH`), which caches it again.

A script whose writes must survive a failover is given a Durability (app/queue/durability.py):
its call is followed by WAIT on the same connection, in one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.queue.channel import CommandChannel
from app.queue.durability import NONE, Durability, NotReplicated

Arg = str | bytes | int | float


class LuaScript:
    __slots__ = ("_durability", "_redis", "_sha", "_source")

    def __init__(self, redis: Redis, source: str, *, durability: Durability = NONE) -> None:
        self._redis, self._source, self._durability = redis, source, durability
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        if self._durability.required:
            return await self._call_and_wait(keys, args)
        channel: CommandChannel | None = getattr(self._redis.connection_pool, "channel", None)
        if channel is not None:  # the engine's own pools (app/queue/connections.py)
            try:
                return await channel.call("EVALSHA", self._sha, len(keys), *keys, *args)
            except NoScriptError:
                return await channel.call("EVAL", self._source, len(keys), *keys, *args)
        # execute_command is unannotated in redis-py.
        try:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", self._source, len(keys), *keys, *args)

    async def _call_and_wait(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The script, then WAIT on the same connection (a pipeline); NotReplicated when fewer
        replicas than required confirmed it. The script's own error is raised as it stands."""
        wanted = self._durability
        for command, script in (("EVALSHA", self._sha), ("EVAL", self._source)):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.execute_command(command, script, len(keys), *keys, *args)
                pipe.execute_command("WAIT", wanted.replicas, wanted.timeout_ms)
                reply, confirmed = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError):
                continue  # WAIT confirmed nothing new; EVAL caches the script again
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(confirmed, BaseException):
                raise confirmed
            if int(confirmed) < wanted.replicas:
                raise NotReplicated(int(confirmed), wanted)
            return reply
        raise AssertionError("EVAL cannot answer NOSCRIPT")
