"""A Redis pub/sub connection that hands each message to a callback as soon as its bytes arrive.

redis-py's PubSub reads each message through a stack of coroutines (get_message, its retry
wrapper, read_response, a timeout, the stream reader), each resumed by the loop in turn. A
handed-off job (app/queue/handoff.py) waits for all of them, and on an idle machine every one
of those steps runs cold. Here an asyncio Protocol parses what arrives with hiredis (which
redis-py itself uses) inside `data_received` and calls `on_message(channel, data)` at once.

The connection is opened from the pool's own settings, as redis-py would open it
(app/queue/raw_connection.py: TCP, TLS or a unix socket, behind Sentinel to the primary the
sentinels name at that moment, which `address` says), then AUTH with the pool's user and
password. Pub/sub channels are not per database, so there is no SELECT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, cast

import hiredis
import structlog
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from app.queue import raw_connection

log = structlog.get_logger(__name__)

OnMessage = Callable[[bytes, bytes], None]

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
        raw_connection.tune(transport)

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
        conn = raw_connection.settings_of(redis.connection_pool)
        if timeout_s is None:
            timeout_s = raw_connection.connect_timeout_s(conn)
        protocol = _Protocol(on_message)
        subscription = cls(protocol)
        try:
            async with asyncio.timeout(timeout_s):
                subscription.address = await raw_connection.open_transport(redis.connection_pool, conn, protocol)
                auth = await raw_connection.auth_command(conn)
                if auth is not None:
                    subscription._send(auth)
                    try:
                        await subscription._reply()
                    except ResponseError as exc:  # WRONGPASS, or a server without passwords
                        raise AuthenticationError(str(exc)) from None
                subscription._send(raw_connection.command(b"SUBSCRIBE", *wanted))
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
            raise raw_connection.reply_error(str(reply))
        return reply
