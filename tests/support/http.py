"""Small HTTP helpers for talking to a worker's sidecar."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        body: Any = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def wait_for_status(port: int, path: str, status: int, timeout_s: float = 30.0) -> Any:
    """Ask `path` until it answers `status`; the body of that answer."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                code, body = await get(port, path)
            except aiohttp.ClientConnectionError:
                code, body = 0, None
            if code == status:
                return body
            await asyncio.sleep(0.1)


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int | None, bytes]:
    """One request on a connection of its own, `Connection: close`: (status, whole reply), or
    (None, b"") when the connection was closed without a reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        reply = await reader.read()
    except ConnectionResetError:
        reply = b""
    finally:
        writer.close()
    return (int(reply.split(b" ", 2)[1]) if reply else None), reply
