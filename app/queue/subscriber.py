"""A Redis pub/sub connection that hands each message to a callback as soon as its bytes arrive.

redis-py's PubSub reads each message through a stack of coroutines (get_message, its retry
wrapper, read_response, a timeout, the stream reader), each resumed by the loop in turn. A
handed-off job (app/queue/handoff.py) waits for all of them, and on an idle machine every one
of those steps runs cold. Here an asyncio Protocol parses what arrives with hiredis (which
redis-py itself uses) inside `data_received` and calls `on_message(channel, data)` at once.

The connection is opened from the pool's own settings, as redis-py would open it: TCP, TLS
(`rediss://`, with the URL's CA and client certificates), or a unix socket, then AUTH with the
pool's user and password; behind Sentinel, to the primary the sentinels name at that moment
(`address` says which). Pub/sub channels are not per database, so there is no SELECT.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any, cast

import hiredis
import structlog
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError, RedisError, ResponseError

from app.queue import sentinel

log = structlog.get_logger(__name__)

OnMessage = Callable[[bytes, bytes], None]

DEFAULT_CONNECT_TIMEOUT_S = 5.0


# A subscriber only listens: a peer gone without a word (a NAT's idle timeout, a host that lost
# power) would never be noticed. Kernel keepalives find it within about half a minute, at no
# cost to Redis (a PING would add to the idle process's commands).
_KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def _keep_alive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE.items():
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _command(*parts: bytes) -> bytes:
    """One command in RESP, the way every Redis client writes it."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.reader = hiredis.Reader()
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        """Everything that is not a message: replies to AUTH and SUBSCRIBE."""
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Done, with the reason, once the connection is gone."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(sock)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # not Redis speaking: nothing after it can be trusted
                self.lose(f"not the Redis protocol: {exc}")
                return
            if reply is False or self.lost.done():  # closed by a handler: the rest is not delivered
                return
            if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                try:
                    self.on_message(reply[1], reply[2])
                except Exception:  # one bad message must not stop the ones behind it
                    log.exception("pubsub_message_handler_failed", channel=repr(reply[1])[:80])
            else:
                self.replies.put_nowait(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose(str(exc) if exc else "closed by the server")

    def lose(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        if self.transport is not None:
            self.transport.close()


class Subscription:
    """A connection subscribed to some channels. `on_message` runs inside the loop's read
    callback, so it must not block; it may schedule tasks."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self.address: tuple[str, int] | None = None
        """The primary it is subscribed on, when the sentinels chose it; else None."""

    @classmethod
    async def open(cls, redis: Redis, channels: Iterable[str], on_message: OnMessage, *,
                   timeout_s: float | None = None) -> Subscription:
        """Connect as `redis`'s pool would, authenticate, subscribe and wait until Redis has
        confirmed every channel. Raises redis-py's ConnectionError (AuthenticationError for
        refused credentials) or TimeoutError."""
        wanted = [c.encode() for c in channels]
        if not wanted:
            raise ValueError("a subscription needs at least one channel")
        conn = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        if timeout_s is None:
            timeout_s = conn.socket_connect_timeout or DEFAULT_CONNECT_TIMEOUT_S
        protocol = _Protocol(on_message)
        subscription = cls(protocol)
        try:
            async with asyncio.timeout(timeout_s):
                subscription.address = await sentinel.primary_address(redis)
                if subscription.address is not None:
                    conn.host, conn.port = subscription.address
                await _connect(conn, protocol)
                await subscription._authenticate(conn)
                subscription._send(_command(b"SUBSCRIBE", *wanted))
                for _ in wanted:
                    reply = await subscription._reply()
                    if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                        raise ConnectionError(f"SUBSCRIBE answered {reply!r:.200}")
        except BaseException:
            subscription.close()
            raise
        return subscription

    @property
    def lost(self) -> bool:
        return self._protocol.lost.done()

    def raise_if_lost(self) -> None:
        if self.lost:
            raise ConnectionError(f"pub/sub connection lost: {self._protocol.lost.result()}")

    def when_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the connection is gone."""
        self._protocol.lost.add_done_callback(lambda _: callback())

    def close(self) -> None:
        self._protocol.lose("closed by this process")

    def _send(self, data: bytes) -> None:
        assert self._protocol.transport is not None
        self._protocol.transport.write(data)

    async def _reply(self) -> Any:
        """The next reply that is not a message, or ConnectionError once the connection is gone."""
        getting = asyncio.ensure_future(self._protocol.replies.get())
        await asyncio.wait([getting, self._protocol.lost], return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            self.raise_if_lost()
        reply = getting.result()
        if isinstance(reply, hiredis.ReplyError):
            raise _error(str(reply))
        return reply

    async def _authenticate(self, conn: Connection | UnixDomainSocketConnection) -> None:
        provider = conn.credential_provider
        if provider is None and (conn.username or conn.password):
            provider = UsernamePasswordCredentialProvider(conn.username, conn.password)
        if provider is None:
            return
        credentials = await provider.get_credentials_async()
        self._send(_command(b"AUTH", *(str(c).encode() for c in credentials)))
        try:
            await self._reply()
        except ResponseError as exc:  # WRONGPASS, or a server without passwords
            raise AuthenticationError(str(exc)) from None


def _error(message: str) -> RedisError:
    """An error reply as redis-py would raise it: missing or refused credentials (NOAUTH,
    WRONGPASS) and missing channel rights (NOPERM) by their own classes."""
    if message.startswith(("NOAUTH", "WRONGPASS")):
        return AuthenticationError(message)
    if message.startswith("NOPERM"):
        return NoPermissionError(message)
    return ResponseError(message)


async def _connect(conn: Connection | UnixDomainSocketConnection, protocol: _Protocol) -> None:
    loop = asyncio.get_running_loop()
    if isinstance(conn, UnixDomainSocketConnection):
        await loop.create_unix_connection(lambda: protocol, conn.path)
        return
    ssl_context = conn.ssl_context.get() if isinstance(conn, SSLConnection) else None
    await loop.create_connection(lambda: protocol, conn.host, conn.port, ssl=ssl_context)
