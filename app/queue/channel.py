"""One Redis connection shared by every script call of a pool: commands written as they come,
replies handed back in order.

Every enqueue, claim and finish is one script call, so the cost of a call is paid per job. Through
redis-py 8 a call is about 330 Python function calls and three to four passes of the event loop
(a connection checked out and back, its timeouts armed, its reply read through a stack of
coroutines); here it is one write and one future, resolved inside the socket's read callback,
where hiredis parses the reply. Redis answers a connection's commands in the order it received
them, so the callers of a burst share one connection and its round trips overlap, with no pool.

Semantics are redis-py's as the engine configures it (app/queue/connections.py): no command is
retried, an error reply raises redis-py's exception for it, a lost connection fails every call
waiting on it with ConnectionError and the next call connects again, and a cancelled caller's
reply is read and dropped. A READONLY reply (a primary demoted by a failover) drops the
connection, so the next call asks the sentinels again, as redis-py's Sentinel pool does.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast

import hiredis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError, ReadOnlyError

from app.queue import raw_connection


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: str | None = None
        """Why the connection is gone, once it is."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        raw_connection.tune(transport)

    def send(self, data: bytes) -> asyncio.Future[Any]:
        if self.lost is not None or self.transport is None:
            raise ConnectionError(f"Redis connection lost: {self.lost}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(data)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # not Redis speaking: nothing after it can be trusted
                self.lose(f"not the Redis protocol: {exc}")
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.lose("a reply to no command")
                return
            future = self.waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is read and dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                error = raw_connection.reply_error(str(reply))
                if isinstance(error, ReadOnlyError):
                    future.set_exception(ConnectionError(f"the server is a replica now: {reply}"))
                    self.lose("the primary was demoted")
                    return
                future.set_exception(error)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose(str(exc) if exc else "closed by the server")

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        waiting, self.waiting = self.waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError(f"Redis connection lost: {reason}"))
        if self.transport is not None:
            self.transport.close()


class CommandChannel:
    """The shared connection of one pool (see the module docstring); the pool closes it."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._replies: _Replies | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *args: Any) -> Any:
        """Send one command; its reply, or the exception for its error reply."""
        replies = self._replies
        if replies is None or replies.lost is not None:
            replies = await self._connect()
        return await replies.send(raw_connection.command(*args))

    async def _connect(self) -> _Replies:
        async with self._connecting:
            if self._replies is not None and self._replies.lost is None:
                return self._replies  # another caller connected meanwhile
            conn = raw_connection.settings_of(self._pool)
            replies = _Replies()
            try:
                async with asyncio.timeout(raw_connection.connect_timeout_s(conn)):
                    await raw_connection.open_transport(self._pool, conn, replies)
                    handshake = [replies.send(c) for c in await self._handshake(conn)]
                    for answer in handshake:
                        await answer
            except TimeoutError:
                replies.lose("connecting timed out")
                raise ConnectionError("Timeout connecting to Redis") from None
            except OSError as exc:
                replies.lose(str(exc))
                raise ConnectionError(f"Error connecting to Redis: {exc}") from None
            except BaseException:
                replies.lose("connecting failed")
                raise
            self._replies = replies
            return replies

    @staticmethod
    async def _handshake(conn: Any) -> list[bytes]:
        commands = []
        auth = await raw_connection.auth_command(conn)
        if auth is not None:
            commands.append(auth)
        db = int(getattr(conn, "db", 0) or 0)
        if db:
            commands.append(raw_connection.command("SELECT", db))
        return commands

    def close(self) -> None:
        if self._replies is not None:
            self._replies.lose("closed by this process")
            self._replies = None
