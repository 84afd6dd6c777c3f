"""Redis connections for the engine: arq's pool with our JSON codec and a cheaper checkout, and
waiting for Redis at start-up with the shared backoff."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError

from app.backoff import CONNECT_BACKOFF, Deadline, retry_until
from app.queue import codec

log = structlog.get_logger(__name__)


# Failures that pass (a server starting, a network blip); a refused password does not.
_WORTH_WAITING_FOR: tuple[type[BaseException], ...] = (
    redis_errors.BusyLoadingError, redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class RedisUnavailable(RuntimeError):
    """Redis did not answer within the start-up budget."""


# redis-py's own URL parameters for TLS (`rediss://host/0?ssl_ca_certs=/etc/ca.pem`), which arq's
# from_dsn drops with the rest of the query string.
_TLS_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for `url`, TLS parameters of its query string included."""
    settings = RedisSettings.from_dsn(url)
    query = parse_qs(urlsplit(url).query)
    for name in _TLS_PARAMETERS:
        if query.get(name):
            setattr(settings, name, query[name][-1])
    if query.get("ssl_check_hostname"):
        settings.ssl_check_hostname = query["ssl_check_hostname"][-1].lower() in ("1", "true", "yes")
    return settings


async def connect_redis(url: str) -> ArqRedis:
    settings = redis_settings(url)
    settings.conn_timeout = 5
    settings.conn_retries = 0
    redis = await create_pool(settings, job_serializer=codec.dumps, job_deserializer=codec.loads)
    if type(redis.connection_pool) is ConnectionPool:
        # arq builds the pool inside the client; the subclass adds no state, only the checkout.
        redis.connection_pool.__class__ = CheapCheckoutPool
    return redis


class CheapCheckoutPool(ConnectionPool):
    """redis-py's pool, minus a trip round the event loop on every command.

    redis-py makes sure a pooled connection is fit to send on by trying to read from it with a
    zero timeout: a scheduled timeout, a cancellation and a pass of the event loop, about 0.1 ms
    cold, before every command (the largest single cost of an enqueue). What that read can find
    is already on hand without it: the connection's stream holds whatever the event loop has
    received (unread bytes, or the server's EOF), and the parser holds replies it has read but
    nobody took. A connection with none of that is sent on at once; any other goes through
    redis-py's full check. A command cancelled half-way cannot leave a reply behind either:
    redis-py disconnects the connection then. tests/test_connections.py holds both paths to that,
    and fails if redis-py moves the attributes read here (every command would pay again)."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not _ready_to_send(connection):
            await super().ensure_connection(connection)


def _ready_to_send(connection: AbstractConnection) -> bool:
    stream, parser = connection._reader, connection._parser
    if stream is None or connection._writer is None:
        return False  # not connected: connect first
    if stream._buffer or stream.at_eof() or stream.exception() is not None:  # type: ignore[attr-defined]
        return False  # unread bytes, or closed by the server
    # hiredis's reader: replies parsed and never taken. Any other parser gets the full check.
    has_data = getattr(getattr(parser, "_reader", None), "has_data", None)
    return callable(has_data) and not has_data()


async def wait_for_redis(url: str, *, timeout_s: float) -> ArqRedis:
    """A pool once Redis answers PING; retries with backoff, then RedisUnavailable."""
    async def connect() -> ArqRedis:
        try:
            redis = await connect_redis(url)
        except redis_errors.AuthenticationError as exc:
            # A ConnectionError to redis-py, but waiting will not fix a password.
            raise RedisUnavailable(f"Redis refused the credentials: {exc}") from None
        try:
            await redis.ping()
        except BaseException:
            await redis.aclose(close_connection_pool=True)
            raise
        return redis

    try:
        redis_settings(url)
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
