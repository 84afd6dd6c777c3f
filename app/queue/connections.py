"""Redis connections for the engine: redis-py's client on a pool with a cheaper checkout (on one
server, or on the primary a Sentinel URL's sentinels name), and waiting for Redis at start-up
with the shared backoff."""

from __future__ import annotations

from typing import Any

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.backoff import CONNECT_BACKOFF, Deadline, retry_until
from app.config.urls import is_sentinel_url
from app.queue import sentinel
from app.queue.channel import CommandChannel

log = structlog.get_logger(__name__)


# Failures that pass (a server starting, a network blip); a refused password does not.
_WORTH_WAITING_FOR: tuple[type[BaseException], ...] = (
    redis_errors.BusyLoadingError, redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class RedisUnavailable(RuntimeError):
    """Redis did not answer within the start-up budget."""


CONNECT_TIMEOUT_S = 5.0


def connect_redis(url: str) -> Redis:
    """A client for `url` (redis://, rediss:// with redis-py's TLS query parameters such as
    `ssl_ca_certs`, unix://, or redis+sentinel:// for the primary behind Sentinel: see
    app/queue/sentinel.py), connecting on first use.

    Three of redis-py's defaults are set explicitly. No command is retried by the client (from
    redis-py 6 it retries each up to ten times with backoff): the engine's scripts count attempts
    and take locks, so a script re-sent after a lost reply would count twice, and the engine
    decides itself how to ride out an outage (app/backoff.py). RESP2, as before redis-py 8 made
    RESP3 the default: one round trip fewer per connection, and the replies the scripts' callers
    and the wake hub's subscriber parse. And the pool's checkout is the cheaper one below."""
    options = {"protocol": 2, "retry": Retry(NoBackoff(), 0), "socket_connect_timeout": CONNECT_TIMEOUT_S}
    if is_sentinel_url(url):
        return sentinel.connect(url, CheapSentinelPool, **options)
    pool = CheapCheckoutPool.from_url(url, **options)
    return Redis.from_pool(pool)  # the client owns its pool: closing it closes the connections


class CheapCheckoutPool(ConnectionPool):
    """redis-py's pool, minus a trip round the event loop on every command.

    redis-py makes sure a pooled connection is fit to send on by trying to read from it with a
    zero timeout: a scheduled timeout, a cancellation and a pass of the event loop, about 0.1 ms
    cold, before every command (the largest single cost of an enqueue). What that read can find
    is already on hand without it: the connection's stream holds whatever the event loop has
    received (unread bytes, or the server's EOF), and the parser holds replies it has read but
    nobody took. A connection with none of that is sent on at once; any other goes through
    redis-py's full check. A command cancelled half-way cannot leave a reply behind either:
    redis-py disconnects the connection then. tests/queue/test_connections.py holds both paths to that,
    and fails if redis-py moves the attributes read here (every command would pay again)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel = CommandChannel(self)
        """The connection the engine's scripts share (app/queue/channel.py)."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not _ready_to_send(connection):
            await super().ensure_connection(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        self.channel.close()


class CheapSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool with the same cheaper checkout and script channel; its sentinels'
    connections are closed with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        self.channel = CommandChannel(self)

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not _ready_to_send(connection):
            await super().ensure_connection(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        # Called with inuse_connections=False when the sentinels name a new primary: the channel
        # connects again, to it.
        self.channel.close()
        if inuse_connections:  # the client is closing
            await self.sentinel_manager.aclose()


def _ready_to_send(connection: AbstractConnection) -> bool:
    stream, parser = connection._reader, connection._parser
    if stream is None or connection._writer is None:
        return False  # not connected: connect first
    if stream._buffer or stream.at_eof() or stream.exception() is not None:  # type: ignore[attr-defined]
        return False  # unread bytes, or closed by the server
    # hiredis's reader: replies parsed and never taken. Any other parser gets the full check.
    has_data = getattr(getattr(parser, "_reader", None), "has_data", None)
    return callable(has_data) and not has_data()


async def wait_for_redis(url: str, *, timeout_s: float) -> Redis:
    """A client once Redis answers PING; retries with backoff, then RedisUnavailable."""
    async def connect() -> Redis:
        redis = connect_redis(url)
        try:
            await redis.ping()
        except redis_errors.AuthenticationError as exc:
            await redis.aclose(close_connection_pool=True)
            # A ConnectionError to redis-py, but waiting will not fix a password.
            raise RedisUnavailable(f"Redis refused the credentials: {exc}") from None
        except BaseException:
            await redis.aclose(close_connection_pool=True)
            raise
        return redis

    try:
        connect_redis(url)
    except ValueError as exc:
        raise RedisUnavailable(f"not a usable Redis URL: {exc}") from None
    try:
        return await retry_until(connect, backoff=CONNECT_BACKOFF, timeout_s=timeout_s,
                                 retry_on=_WORTH_WAITING_FOR,
                                 on_retry=lambda exc, delay: log.warning("redis_unavailable_retrying",
                                                                         error=str(exc), retry_in_s=round(delay, 3)))
    except Deadline as exc:
        raise RedisUnavailable(f"Redis did not answer within {timeout_s:.0f}s: {exc}") from exc
    except (RedisError, ValueError) as exc:  # wrong password, unknown user, a host that cannot be encoded
        raise RedisUnavailable(f"Redis refused the connection: {type(exc).__name__}: {exc}") from None
