"""A burst against the sidecar: N requests sent at once, each on a connection of its own, as a web
app's request handlers would send them; counts every answer by status and every connection closed
without one, and times each answer from connect to the last byte.

Run as a process of its own (`python -m bench.burst PORT N METHOD PATH [BODY] [TOKEN]`), so the
bench process's own work is not counted as the worker's; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

_DROPPED = "dropped"


async def _one(port: int, request: bytes) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"connect failed: {type(exc).__name__}", 0.0
    try:
        writer.write(request)
        await writer.drain()
        reply = await reader.read()
    except OSError:
        reply = b""
    finally:
        writer.close()
    status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else _DROPPED
    return status, (time.perf_counter() - started) * 1000


async def burst(port: int, n: int, method: str, path: str, body: bytes, token: str) -> dict[str, object]:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    request = head.encode() + body
    answers = await asyncio.gather(*(_one(port, request) for _ in range(n)))
    return {"statuses": dict(Counter(status for status, _ in answers)),
            "times_ms": [ms for status, ms in answers if status != _DROPPED]}


def main(argv: list[str]) -> None:
    port, n, method, path = int(argv[0]), int(argv[1]), argv[2], argv[3]
    body = argv[4].encode() if len(argv) > 4 else b""
    token = argv[5] if len(argv) > 5 else ""
    print(json.dumps(asyncio.run(burst(port, n, method, path, body, token))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
