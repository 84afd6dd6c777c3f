"""The engine's Redis pool skips redis-py's per-command read check only when the connection is
plainly fit to send on: a connection the server closed is replaced, and a reply left unread (in
the socket's stream or already parsed) is never taken for the next command's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from app.queue.connections import CheapCheckoutPool, _ready_to_send, connect_redis
from app.queue.lua import LuaScript
from tests.support.services import ServiceUrls
from tests.support.waits import until_true


@pytest.fixture
async def redis(services: ServiceUrls) -> AsyncIterator[Redis]:
    client = connect_redis(services.redis_url)
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


def _pooled(redis: Redis) -> AbstractConnection:
    (conn,) = redis.connection_pool._available_connections
    return conn


async def test_a_healthy_idle_connection_takes_the_cheap_path(redis: Redis) -> None:
    assert isinstance(redis.connection_pool, CheapCheckoutPool)
    assert await redis.ping()
    conn = _pooled(redis)
    # If redis-py moved what is read here, this turns False and every command pays the full check.
    assert _ready_to_send(conn)
    assert await redis.echo("again") == b"again"
    assert _pooled(redis) is conn


async def test_a_connection_the_server_closed_is_replaced(redis: Redis, services: ServiceUrls) -> None:
    first_id = await redis.client_id()
    conn = _pooled(redis)
    async with connect_redis(services.redis_url) as other:
        await other.client_kill_filter(_id=str(first_id))
    await until_true(lambda: conn._reader is None or conn._reader.at_eof())
    assert not _ready_to_send(conn)
    assert await redis.echo("after the kill") == b"after the kill"
    assert await redis.client_id() != first_id


async def test_a_reply_left_in_the_stream_is_not_read_as_the_next_one(redis: Redis) -> None:
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    await conn.send_command("ECHO", "stale")  # its reply is never read
    await pool.release(conn)
    await until_true(lambda: bool(conn._reader._buffer))
    assert not _ready_to_send(conn)
    assert await redis.echo("fresh") == b"fresh"


async def test_a_reply_already_parsed_and_not_taken_is_not_read_as_the_next_one(redis: Redis) -> None:
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    # Two replies in one write: the first read parses both, and only the first is taken.
    await conn.send_packed_command(conn.pack_commands([("ECHO", "first"), ("ECHO", "second")]))
    await until_true(lambda: len(conn._reader._buffer) >= len(b"$5\r\nfirst\r\n$6\r\nsecond\r\n"))
    assert await conn.read_response() == b"first"
    await pool.release(conn)
    assert not conn._reader._buffer
    assert not _ready_to_send(conn)  # the second reply waits in the parser
    assert await redis.echo("fresh") == b"fresh"


async def test_a_script_redis_has_forgotten_is_sent_again(redis: Redis) -> None:
    script = LuaScript(redis, "return {KEYS[1], ARGV[1], #ARGV}")
    assert await script(keys=["k"], args=["a", 2]) == [b"k", b"a", 2]
    await redis.script_flush()  # as after a restart
    assert await script(keys=["k"], args=["b"]) == [b"k", b"b", 1]
    assert (await redis.script_exists(script._sha)) == [True]
