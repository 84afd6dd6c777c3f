"""A TCP port on 127.0.0.1 relaying each connection to the session's PostgreSQL unix socket.

pgserver keeps its socket in a directory only its own user may enter (as root it runs the
server as `pgserver`), so a process without CAP_DAC_OVERRIDE, such as the worker inside the
unit's sandbox, cannot reach it. Through the relay it connects over TCP, as production does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit, urlunsplit


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def tcp_database_url(database_url: str) -> AsyncIterator[str]:
    """`database_url` itself when it is TCP already, else a URL to a relay to its unix socket."""
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if parts.hostname or not socket_dir.startswith("/"):
        yield database_url
        return
    port = parse_qs(parts.query).get("port", [str(parts.port or 5432)])[0]
    path = f"{socket_dir}/.s.PGSQL.{port}"
    tasks: set[asyncio.Task[None]] = set()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_unix_connection(path)
        await asyncio.gather(_pump(client_r, server_w), _pump(server_r, client_w))

    def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(relay(client_r, client_w))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    bound = server.sockets[0].getsockname()[1]
    user = f"{parts.username or ''}:{parts.password or ''}@" if parts.username else ""
    try:
        yield urlunsplit((parts.scheme, f"{user}127.0.0.1:{bound}", parts.path, "", ""))
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
