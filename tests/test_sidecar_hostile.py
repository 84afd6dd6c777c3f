"""What the sidecar does with hostile or broken requests: a body that drips or never comes is cut
off at the timeout (before any credentials are waited for where a route needs them), and a huge
form is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control
from app.runtime.process import Process
from app.web.dashboard.form import FORM_MAX_BYTES
from tests.support.worker import in_process_worker

QUEUE = "intake-routing"
WRITE = "write-secret-1"
FORM = "application/x-www-form-urlencoded"


@asynccontextmanager
async def sidecar(settings: Settings) -> AsyncIterator[Process]:
    async with in_process_worker(settings, [QUEUE]) as process:
        yield process


async def post_slowly(port: int, path: str, sent: bytes, *, length: int = 1000, headers: str = "",
                      drip_every_s: float | None = None) -> tuple[bytes, float, float]:
    """POST announcing `length` body bytes, sending `sent` and then one byte per `drip_every_s`
    (or nothing): the reply's status line, when it came, and when the connection was closed
    (seconds after the head was sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                 f"Content-Type: {FORM}\r\nContent-Length: {length}\r\n{headers}\r\n".encode() + sent)
    await writer.drain()
    started = time.monotonic()

    async def drip() -> None:
        while drip_every_s is not None:
            await asyncio.sleep(drip_every_s)
            writer.write(b"x")

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(30):
            status = await reader.readline()
            answered = time.monotonic() - started
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass  # closed while bytes were still arriving: as closed as it gets
    finally:
        dripping.cancel()
        writer.close()
    return status, answered, time.monotonic() - started


async def test_an_action_without_a_session_is_refused_before_its_body_and_then_closed(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A POST to a dashboard action without a session, whose body drips a byte every 0.2 s, is
    answered 403 at once (the body is not waited for) and closed within SIDECAR_HEADER_TIMEOUT_S
    after: it never holds a connection for as long as it drips."""
    settings = make_settings(api_token=WRITE, sidecar_header_timeout_s=1)
    async with sidecar(settings):
        status, answered, closed = await post_slowly(settings.health.port, f"/queues/{QUEUE}/pause", b"csrf=",
                                                     drip_every_s=0.2)
    assert b" 403 " in status and answered < 0.5
    assert closed < 3, f"the connection stayed open {closed:.1f}s"
    assert await control.paused(res.redis) == set()


@pytest.mark.parametrize("drip_every_s", [None, 0.2], ids=["never-arrives", "drips"])
async def test_a_login_whose_body_is_slow_is_cut_off_at_the_header_timeout(
        make_settings: Callable[..., Settings], drip_every_s: float | None) -> None:
    """`POST /login` has no session to check first, so its form is read, but within
    SIDECAR_HEADER_TIMEOUT_S, whether the body never comes or drips a byte every 0.2 s (never
    silent long enough for an idle timeout): 408, and the connection closes soon after."""
    settings = make_settings(api_token=WRITE, sidecar_header_timeout_s=1)
    async with sidecar(settings):
        status, answered, closed = await post_slowly(settings.health.port, "/login", b"token=",
                                                     drip_every_s=drip_every_s)
    assert b" 408 " in status
    assert 0.9 < answered < 2.5, f"answered after {answered:.1f}s"
    assert closed < 4.5, f"the connection stayed open {closed:.1f}s"


async def test_a_huge_form_is_refused_announced_or_streamed(make_settings: Callable[..., Settings]) -> None:
    """A login form larger than FORM_MAX_BYTES gets 413 without being read: announced by its
    Content-Length, or streamed in chunks; a form of another type is 415."""
    settings = make_settings(api_token=WRITE, sidecar_header_timeout_s=1)
    async with sidecar(settings):
        port = settings.health.port
        status, answered, _ = await post_slowly(port, "/login", b"token=", length=50_000_000)
        assert b" 413 " in status and answered < 1

        async def chunks() -> AsyncIterator[bytes]:
            yield b"token="
            for _ in range(40):
                yield b"x" * 10_000

        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client:
            async with client.post(f"{base}/login", data=chunks(), headers={"Origin": base, "Content-Type": FORM}) as r:
                assert r.status == 413
            async with client.post(f"{base}/login", data=aiohttp.FormData({"token": WRITE}, default_to_multipart=True),
                                   headers={"Origin": base}) as r:
                assert r.status == 415
            async with client.post(f"{base}/login", data={"token": WRITE, "pad": "x" * (FORM_MAX_BYTES // 2)},
                                   headers={"Origin": base}, allow_redirects=False) as r:
                assert r.status == 303  # a large form that fits is read
