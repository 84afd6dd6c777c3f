"""The script channel (app/queue/channel.py): the engine's scripts share one connection per pool,
replies matched to callers in order. Against a private redis-server, since some tests kill its
clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from app.queue.connections import connect_redis
from app.queue.lua import LuaScript
from bench.redis_server import private_redis

ECHO = "return ARGV[1]"


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with private_redis() as url:
        yield url


@pytest.fixture
async def client(server: str) -> AsyncIterator[Redis]:
    redis = connect_redis(server)
    yield redis
    await redis.aclose()


async def test_concurrent_calls_get_their_own_replies_and_a_cancelled_one_changes_nothing(client: Redis) -> None:
    """300 calls at once on one connection, every third cancelled before its reply: each of the
    others gets its own argument back, and the channel goes on working."""
    echo = LuaScript(client, ECHO)
    calls = [asyncio.ensure_future(echo(args=[f"v{n}"])) for n in range(300)]
    await asyncio.sleep(0)  # all written
    for call in calls[::3]:
        call.cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    for n, reply in enumerate(done):
        if n % 3 == 0:
            assert isinstance(reply, asyncio.CancelledError)
        else:
            assert reply == f"v{n}".encode()
    assert await echo(args=["after"]) == b"after"
    assert len(await client.client_list()) == 2, "the pool's one connection and the channel's"


async def test_a_connection_killed_under_a_call_fails_it_and_the_next_call_reconnects(client: Redis,
                                                                                          server: str) -> None:
    """A call waiting on the channel (a blocking pop here) when the server drops the connection
    fails with ConnectionError; the next call connects again."""
    echo = LuaScript(client, ECHO)
    assert await echo(args=["warm"]) == b"warm"
    channel = client.connection_pool.channel  # type: ignore[attr-defined]  # the engine's pools have one
    pending = asyncio.ensure_future(channel.call("BLPOP", "nothing-comes", 0))
    killer = Redis.from_url(server)
    try:
        while not [c for c in await killer.client_list() if c["cmd"] == "blpop"]:
            await asyncio.sleep(0.01)
        await killer.client_kill_filter(_type="normal", skipme=True)
    finally:
        await killer.aclose()
    with pytest.raises(ConnectionError, match="connection lost"):
        await pending
    assert await echo(args=["again"]) == b"again"


async def test_a_forgotten_script_is_sent_whole_and_an_error_reply_keeps_the_connection(client: Redis) -> None:
    echo = LuaScript(client, ECHO)
    assert await echo(args=["one"]) == b"one"
    await client.script_flush()
    assert await echo(args=["two"]) == b"two"  # NOSCRIPT, then EVAL
    broken = LuaScript(client, "return redis.call('INCR', KEYS[1])")
    await client.set("text", "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await broken(keys=["text"])
    assert await echo(args=["three"]) == b"three"


async def test_the_channel_authenticates_and_selects_the_database(server: str) -> None:
    """With the URL's password and database; a wrong password is AuthenticationError."""
    setup = Redis.from_url(server)
    try:
        await setup.config_set("requirepass", "s3cret")
    finally:
        await setup.aclose()
    redis = connect_redis(server.replace("redis://", "redis://:s3cret@").replace("/0", "/5"))
    try:
        store = LuaScript(redis, "redis.call('SET', KEYS[1], ARGV[1]) return 1")
        assert await store(keys=["k"], args=["v"]) == 1
        assert await redis.get("k") == b"v"  # where the pool reads: db 5
    finally:
        await redis.aclose()
    wrong = connect_redis(server.replace("redis://", "redis://:wrong@"))
    try:
        with pytest.raises(AuthenticationError):
            await LuaScript(wrong, ECHO)(args=["x"])
    finally:
        await wrong.aclose()
