"""The sidecar's listening socket: at most SIDECAR_MAX_CONNECTIONS connections served at once,
and never a request dropped to make room.

aiohttp has no connection limit, and every open socket costs a file descriptor the worker's Redis
and PostgreSQL connections need too. Past the limit this site stops accepting: new connections
wait in the kernel's listen backlog (SIDECAR_LISTEN_BACKLOG) and are taken as room frees. Room is
made only from connections that hold no request: a kept-alive connection waiting for its next
request (the oldest first, as a keep-alive timeout would), or one that has sent no complete
request SILENT_GRACE_S after it was accepted (a half request line: a client that means to talk
sent its request while it waited in the backlog, or one round trip after, and what it sent is
read before the site looks for room in the same turn of the loop), and only when a connection
waits in the backlog. A connection whose request has arrived is never closed by the site: it ends
when its handler answers, or by the handler's own body timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger(__name__)

SILENT_GRACE_S = 0.25
"""A connection with no complete request this long after its accept may be closed to make room
(only while the site is full). Short, since slow-talking connections ahead of the health probe in
the backlog each hold a place this long."""
_ROOM_POLL_S = 0.005
"""How often a full site looks for room: only while full, so an idle sidecar never polls."""
_ACCEPT_ERROR_PAUSE_S = 0.1
"""After an accept that failed for want of descriptors (EMFILE), before trying again."""


class BoundedSite(web.BaseSite):
    """A TCP site of `runner` that serves at most `max_connections` connections at a time."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, max_connections: int,
                 backlog: int) -> None:
        super().__init__(runner, backlog=backlog)
        self.host, self.requested_port = host, port
        self.max_connections, self.listen_backlog = max_connections, backlog
        assert runner.server is not None  # BaseSite.__init__ refuses a runner not set up
        self.web_server = runner.server
        self.opened_at: dict[asyncio.BaseTransport, float] = {}
        """When each connection this site accepted was opened (pruned as they close)."""
        self._listener: _Listener | None = None

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.requested_port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        sockets = await _listening_sockets(loop, self.host, self.requested_port, self.listen_backlog)
        self._listener = _Listener(sockets, [asyncio.create_task(self._accept_forever(s), name="sidecar-accept")
                                             for s in sockets])
        # BaseSite.stop() closes `_server` and the runner reads its sockets for `addresses`.
        self._server = self._listener

    async def _accept_forever(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._full():
                await _connection_waiting(loop, sock)
                await self._room()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("sidecar_accept_failed", error=str(exc))
                    await asyncio.sleep(_ACCEPT_ERROR_PAUSE_S)
                continue  # ECONNABORTED and the like: that client gave up; the next one may not have
            try:
                transport, _ = await loop.connect_accepted_socket(self.web_server, conn)
            except OSError:
                conn.close()
                continue
            self.opened_at[transport] = time.monotonic()

    def _full(self) -> bool:
        return len(self.web_server.connections) >= self.max_connections

    async def _room(self) -> None:
        """For a connection waiting in the backlog: return once fewer than max_connections are
        open, closing idle ones to get there (none is closed while nobody waits)."""
        while self._full():
            if not self._close_one_idle():
                await asyncio.sleep(_ROOM_POLL_S)

    def _close_one_idle(self) -> bool:
        """Close the connection that has waited longest without a request; False when none is idle."""
        now = time.monotonic()
        open_now = {h.transport: h for h in self.web_server.connections if h.transport is not None}
        for gone in self.opened_at.keys() - open_now.keys():
            del self.opened_at[gone]
        idle = [(self.opened_at.get(t, now), h) for t, h in open_now.items() if holds_no_request(h)]
        # Kept-alive connections that served a request first, then the silent ones past their grace.
        served = [x for x in idle if x[1]._request_count > 0]
        silent = [x for x in idle if x[1]._request_count == 0 and now - x[0] >= SILENT_GRACE_S]
        candidates = served or silent
        if not candidates:
            return False
        min(candidates, key=lambda x: x[0])[1].force_close()
        return True


def holds_no_request(handler: RequestHandler) -> bool:
    """Whether closing this connection loses no request: nothing is being handled, nothing is
    parsed and waiting, and the handler sits waiting for the next request.

    Reads aiohttp's RequestHandler state (3.14): `_request_in_progress` is set while a handler
    runs, `_messages` holds requests parsed but not yet taken, `_waiter` exists while the
    connection waits for one. tests/web/test_sidecar.py fails if aiohttp moves them."""
    return (not handler._request_in_progress and not handler._messages
            and handler._waiter is not None and not handler._waiter.done())


async def _connection_waiting(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Return once a connection waits in `sock`'s backlog (the socket is readable)."""
    ready = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _listening_sockets(loop: asyncio.AbstractEventLoop, host: str, port: int,
                             backlog: int) -> list[socket.socket]:
    """One listening socket per address `host` resolves to, as loop.create_server binds them."""
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener(asyncio.AbstractServer):
    """What aiohttp's runner expects of a site's server: its sockets, and close()."""

    def __init__(self, sockets: list[socket.socket], accepting: list[asyncio.Task[None]]) -> None:
        self._sockets, self._accepting = sockets, accepting

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def close(self) -> None:
        for task in self._accepting:
            task.cancel()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._accepting, return_exceptions=True)

    def is_serving(self) -> bool:
        return any(not t.done() for t in self._accepting)

    async def start_serving(self) -> None:
        """Serving starts with the site; nothing to start."""

    async def serve_forever(self) -> None:
        await self.wait_closed()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()
