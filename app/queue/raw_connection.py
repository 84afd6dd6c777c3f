"""Opening a Redis connection of our own beside redis-py's pool, from the pool's own settings.

The wake hub's subscriber (app/queue/subscriber.py) and the script channel (app/queue/channel.py)
each run an asyncio Protocol that parses replies with hiredis (which redis-py itself uses) as they
arrive, instead of redis-py's stack of coroutines per reply. Both open their connection here, as
redis-py would open it: TCP, TLS (`rediss://`, with the URL's CA and client certificates) or a
unix socket, to the primary the sentinels name when the pool is a Sentinel pool; and both speak
the same AUTH, with the pool's user and password.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import RedisError

from app.queue import sentinel

DEFAULT_CONNECT_TIMEOUT_S = 5.0

# A connection that only listens (or waits for a reply) would never notice a peer gone without a
# word (a NAT's idle timeout, a host that lost power). Kernel keepalives find it within about half
# a minute, at no cost to Redis (a PING would add to an idle process's commands).
_KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def command(*parts: Any) -> bytes:
    """One command in RESP (str, bytes, int and float arguments, as redis-py encodes them)."""
    packed: bytes = hiredis.pack_command(parts)
    return packed


def reply_error(message: str) -> RedisError:
    """An error reply as redis-py raises it (NOSCRIPT as NoScriptError, WRONGPASS as
    AuthenticationError, READONLY as ReadOnlyError...)."""
    from redis._parsers.base import BaseParser  # redis-py's own table of error prefixes

    error: RedisError = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]  # unannotated
    return error


def tune(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY and keepalives on a TCP connection (a unix socket needs neither)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE.items():
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def settings_of(pool: ConnectionPool) -> AbstractConnection:
    """A connection object of the pool, never connected: where and how to connect."""
    return pool.make_connection()  # type: ignore[no-untyped-call,no-any-return]  # unannotated in redis-py


def connect_timeout_s(conn: AbstractConnection) -> float:
    return float(getattr(conn, "socket_connect_timeout", None) or DEFAULT_CONNECT_TIMEOUT_S)


async def open_transport(pool: ConnectionPool, conn: AbstractConnection,
                         protocol: asyncio.Protocol) -> tuple[str, int] | None:
    """Connect `protocol` where `conn` says (behind Sentinel: where the sentinels say the primary
    is now); the primary's address when the sentinels chose it, else None."""
    loop = asyncio.get_running_loop()
    if isinstance(conn, UnixDomainSocketConnection):
        await loop.create_unix_connection(lambda: protocol, conn.path)
        return None
    assert isinstance(conn, Connection)
    address = await sentinel.primary_address(pool)
    host, port = address if address is not None else (conn.host, conn.port)
    ssl_context = conn.ssl_context.get() if isinstance(conn, SSLConnection) else None
    await loop.create_connection(lambda: protocol, host, port, ssl=ssl_context)
    return address


async def auth_command(conn: AbstractConnection) -> bytes | None:
    """AUTH with the pool's credentials, or None when it has none."""
    provider = conn.credential_provider
    username, password = getattr(conn, "username", None), getattr(conn, "password", None)
    if provider is None and (username or password):
        provider = UsernamePasswordCredentialProvider(username, password)
    if provider is None:
        return None
    credentials = await provider.get_credentials_async()
    return command("AUTH", *(str(c) for c in credentials))
