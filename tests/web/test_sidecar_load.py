"""The sidecar under bursts: every request that arrives gets an answer (none is closed to make
room), connections stay within SIDECAR_MAX_CONNECTIONS, requests past the limit are told to retry
(503 with Retry-After), and the health probe answers through all of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from app.config import Settings
from app.runtime.process import Process
from app.web.site import holds_no_request
from tests.support.http import raw_request
from tests.support.worker import in_process_worker

TOKEN = "load-test-token"
PING = json.dumps({"name": "ping", "queue": "sla-monitor"}).encode()


def _head(method: str, path: str, body: bytes = b"", length: int | None = None) -> str:
    size = len(body) if length is None else length
    return (f"{method} {path} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {TOKEN}\n"
            f"Content-Type: application/json\nContent-Length: {size}\nConnection: close\n")


def _open_connections(process: Process) -> int:
    assert process.sidecar is not None and process.sidecar.server is not None
    return len(process.sidecar.server.connections)


@asynccontextmanager
async def _peak_connections(process: Process) -> AsyncIterator[list[int]]:
    """The most sidecar connections open at once while the block runs (sampled every loop turn)."""
    peak = [0]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], _open_connections(process))
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        sampler.cancel()


async def test_a_burst_of_health_checks_and_enqueues_is_answered_in_full(
        make_settings: Callable[..., Settings]) -> None:
    """1,000 concurrent GET /health/live and 300 concurrent POST /api/v1/jobs against a sidecar
    that serves 400 connections at once: every request is answered (200, 201), every job is
    enqueued, and no more than 400 connections are ever open."""
    settings = make_settings(api_token=TOKEN, sidecar_max_connections=400)
    async with in_process_worker(settings, ["sla-monitor"]) as process:
        port = settings.health.port
        async with _peak_connections(process) as peak:
            health = await asyncio.gather(*(raw_request(port, _head("GET", "/health/live")) for _ in range(1000)))
            posts = await asyncio.gather(*(raw_request(port, _head("POST", "/api/v1/jobs", PING), PING)
                                           for _ in range(300)))
        assert Counter(code for code, _ in health) == {200: 1000}
        assert Counter(code for code, _ in posts) == {201: 300}
        ids = {json.loads(reply.partition(b"\r\n\r\n")[2])["jobs"][0]["jobId"] for _, reply in posts}
        assert len(ids) == 300
        assert 0 < peak[0] <= 400


async def test_requests_past_the_limit_are_told_to_retry_while_health_answers(
        make_settings: Callable[..., Settings]) -> None:
    """With SIDECAR_MAX_CONNECTIONS=20, eighteen uploads that never send their body hold every
    slot that is not kept for probes: the next POST is answered at once with 503, Retry-After and
    a JSON error, /health/live and /metrics answer at once, and each stalled upload is answered
    408 when its body times out, never dropped."""
    settings = make_settings(api_token=TOKEN, sidecar_max_connections=20, sidecar_header_timeout_s=1.5)
    async with in_process_worker(settings, ["sla-monitor"]) as process:
        port = settings.health.port
        stalled = [asyncio.create_task(raw_request(port, _head("POST", "/api/v1/jobs", length=100)))
                   for _ in range(18)]
        async with asyncio.timeout(5):
            while _open_connections(process) < 18:
                await asyncio.sleep(0.01)
        started = time.monotonic()
        code, reply = await raw_request(port, _head("POST", "/api/v1/jobs", PING), PING)
        assert code == 503
        assert b"Retry-After: 1" in reply and b'"code":"busy"' in reply.replace(b" ", b"")
        for path in ("/health/live", "/health", "/metrics"):
            assert (await raw_request(port, _head("GET", path)))[0] == 200
        assert time.monotonic() - started < 1.0
        answers = await asyncio.gather(*stalled)
        assert Counter(code for code, _ in answers) == {408: 18}


async def test_idle_keepalive_connections_make_room_and_a_busy_one_is_never_closed(
        make_settings: Callable[..., Settings]) -> None:
    """Ten connections fill a sidecar of ten: one holds a request in progress (its body not
    sent yet), nine are kept alive after a request. A new client is served at once: an idle
    connection (the oldest) was closed for it, and the one in progress completes with 201."""
    settings = make_settings(api_token=TOKEN, sidecar_max_connections=10, sidecar_header_timeout_s=10)
    async with in_process_worker(settings, ["sla-monitor"]) as process:
        port = settings.health.port
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_writer.write(_head("POST", "/api/v1/jobs", length=len(PING)).replace("\n", "\r\n").encode() + b"\r\n")
        kept = []
        for _ in range(9):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await reader.readuntil(b'"ok"}'))[:12] == b"HTTP/1.1 200"
            kept.append((reader, writer))
        assert process.sidecar is not None and process.sidecar.server is not None
        async with asyncio.timeout(5):
            while sum(holds_no_request(h) for h in process.sidecar.server.connections) < 9:
                await asyncio.sleep(0.01)
        started = time.monotonic()
        assert (await raw_request(port, _head("GET", "/health/live")))[0] == 200
        assert time.monotonic() - started < 0.5
        assert await kept[0][0].read() == b"", "the oldest idle connection was closed for the newcomer"
        busy_writer.write(PING)
        reply = await busy_reader.readuntil(b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 201"), reply
        for _, writer in [*kept, (busy_reader, busy_writer)]:
            writer.close()
