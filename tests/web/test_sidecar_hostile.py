"""What the sidecar does with hostile or broken requests: a body that drips or never comes is cut
off at the timeout (before any credentials are waited for where a route needs them), a huge form is
refused, forwarded scheme and host are believed only from TRUSTED_PROXIES, ALLOWED_HOSTS refuses
other hosts but not probes by address, and a request aiohttp cannot parse is one INFO line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control
from app.runtime.process import Process
from app.web import runner_for
from app.web.dashboard import session
from app.web.dashboard.form import FORM_MAX_BYTES
from app.web.server_log import MALFORMED
from tests.support.http import raw_request
from tests.support.worker import in_process_worker, start_worker

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


async def test_a_client_that_hangs_up_mid_form_ends_quietly(
        make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    """A login whose client closes the connection halfway through its form ends the handler
    without an ERROR record (aiohttp's "Connection lost" used to escape it as a 500)."""
    settings = make_settings(api_token=WRITE)
    async with sidecar(settings) as process:
        assert process.sidecar is not None and process.sidecar.server is not None
        server = process.sidecar.server
        with caplog.at_level(logging.INFO):
            _, writer = await asyncio.open_connection("127.0.0.1", settings.health.port)
            writer.write(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{settings.health.port}\r\nOrigin: "
                         f"http://127.0.0.1:{settings.health.port}\r\nContent-Type: {FORM}\r\n"
                         f"Content-Length: 100\r\n\r\ntoken=".encode())
            await writer.drain()
            async with asyncio.timeout(5):
                while not server.requests_count:  # the request is being handled
                    await asyncio.sleep(0.01)
            writer.close()
            async with asyncio.timeout(5):
                while server.connections:
                    await asyncio.sleep(0.01)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


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


async def _login(base: str, headers: dict[str, str]) -> tuple[int, str]:
    """POST /login with the write token and `headers`: the status and the Set-Cookie header."""
    async with aiohttp.ClientSession() as client, client.post(
            f"{base}/login", data={"token": WRITE}, headers=headers, allow_redirects=False) as r:
        return r.status, r.headers.get("Set-Cookie", "")


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("10.0.0.0/8, ::1", False), ("", False)],
                         ids=["trusted-proxy", "untrusted-address", "no-proxies"])
async def test_the_session_cookie_is_secure_behind_a_trusted_proxy_and_not_otherwise(
        make_settings: Callable[..., Settings], trusted: str, secure: bool) -> None:
    """`X-Forwarded-Proto: https` from an address in TRUSTED_PROXIES makes the session cookie
    Secure; from any other address it is ignored and the cookie (over plain HTTP) is not."""
    settings = make_settings(api_token=WRITE, trusted_proxies=trusted)
    base = f"http://127.0.0.1:{settings.health.port}"
    async with sidecar(settings):
        status, cookie = await _login(base, {"Origin": base, "X-Forwarded-Proto": "https"})
    assert status == 303 and cookie.startswith(f"{session.COOKIE_NAME}=")
    assert ("; Secure" in cookie) is secure, cookie


async def test_a_forwarded_host_is_the_origin_actions_must_come_from_only_from_a_trusted_proxy(
        make_settings: Callable[..., Settings]) -> None:
    """Behind a trusted proxy the dashboard's origin is the host the proxy names (X-Forwarded-Host
    or Forwarded), so a login from that page is accepted; the same headers from an address not in
    TRUSTED_PROXIES change nothing, and a page of the spoofed host is another site (403)."""
    forwarded_by = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.com"}
    page = {"Origin": "https://dash.example.com"}
    trusting = make_settings(api_token=WRITE, trusted_proxies="127.0.0.0/8")
    async with sidecar(trusting):
        base = f"http://127.0.0.1:{trusting.health.port}"
        assert (await _login(base, {**forwarded_by, **page}))[0] == 303
        assert (await _login(base, {"Forwarded": 'for=1.2.3.4;proto=https;host="dash.example.com"', **page}))[0] == 303
        assert (await _login(base, {**forwarded_by, "Origin": base}))[0] == 403  # the proxy named another host
        # Only the nearest proxy's value counts: a client's own header before it is not believed.
        spoofed = {"X-Forwarded-Host": "evil.example, dash.example.com", "Origin": "http://evil.example"}
        assert (await _login(base, spoofed))[0] == 403
    untrusting = make_settings(api_token=WRITE, trusted_proxies="10.0.0.0/8")
    async with sidecar(untrusting):
        base = f"http://127.0.0.1:{untrusting.health.port}"
        assert (await _login(base, {**forwarded_by, **page}))[0] == 403
        assert (await _login(base, {**forwarded_by, "Origin": base}))[0] == 303


async def test_allowed_hosts_refuse_other_hosts_but_not_probes_by_address(
        make_settings: Callable[..., Settings]) -> None:
    """With ALLOWED_HOSTS, a page or API call for another Host is 400 before any handler, as is a
    forwarded host from an untrusted address; a listed host (any port) is served, and /health/*
    and /metrics also answer a Host that is an IP address or localhost, not a foreign name."""
    settings = make_settings(api_token=WRITE, allowed_hosts="Dash.Example.com", trusted_proxies="127.0.0.1")
    async with sidecar(settings):
        port = settings.health.port

        async def status(path: str, host: str, extra: str = "") -> int | None:
            code, _ = await raw_request(port, f"GET {path} HTTP/1.1\nHost: {host}\n{extra}Connection: close\n")
            return code

        assert await status("/login", "evil.example") == 400
        assert await status("/api/v1/openapi.json", f"127.0.0.1:{port}") == 400
        assert await status("/login", "dash.example.com:8443") == 200
        assert await status("/login", "evil.example", "X-Forwarded-Host: dash.example.com\n") == 200  # trusted
        assert await status("/api/v1/openapi.json", "127.0.0.1", "X-Forwarded-Host: dash.example.com:443\n"
                                                                 f"Authorization: Bearer {WRITE}\n") == 200
        for probe in ("/health", "/health/live", "/metrics"):
            assert await status(probe, f"127.0.0.1:{port}") == 200
            assert await status(probe, f"localhost:{port}") == 200
            assert await status(probe, "[::1]") == 200
            assert await status(probe, "evil.example") == 400
        code, reply = await raw_request(port, "GET / HTTP/1.1\nHost: evil.example\nConnection: close\n")
        assert code == 400 and b'"host_not_allowed"' in reply
    untrusted = make_settings(allowed_hosts="dash.example.com", trusted_proxies="10.0.0.0/8")
    async with sidecar(untrusted):
        code, _ = await raw_request(untrusted.health.port, "GET /login HTTP/1.1\nHost: evil.example\n"
                                                           "X-Forwarded-Host: dash.example.com\nConnection: close\n")
        assert code == 400


async def test_a_nul_in_a_job_id_is_not_found_not_a_server_error(make_settings: Callable[..., Settings]) -> None:
    """`/job?id=%00` passes the parser (the NUL is percent-encoded) and reaches the job page,
    which answers 404 like any unknown id, instead of failing in PostgreSQL with a 500."""
    settings = make_settings()
    async with sidecar(settings):
        code, _ = await raw_request(settings.health.port, "GET /job?id=%00 HTTP/1.1\nHost: x\nConnection: close\n")
    assert code == 404


HOSTILE = {
    "100 KB header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "NUL in the request line": b"GET /health/\x00live HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad chunk size": b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()


async def test_malformed_requests_are_one_info_line_in_the_workers_log(make_env: Callable[..., dict[str, str]]) -> None:
    """The real worker (JSON logs) answers a 100 KB header, a NUL in the request line and a broken
    chunked body with 400, and logs each as one `sidecar_request_malformed` line at info naming
    the client and the reason, with no traceback and nothing at error."""
    env = make_env()
    worker = await start_worker(env)
    try:
        port = int(env["HEALTH_PORT"])
        for data in HOSTILE.values():
            assert b" 400 " in await _send(port, data)
        await worker.wait_for_event(MALFORMED, count=len(HOSTILE), timeout_s=10)
    finally:
        await worker.stop()
    lines = worker.events(MALFORMED)
    assert [line["level"] for line in lines] == ["info"] * len(HOSTILE)
    assert all(line["client"] == "127.0.0.1" and line["status"] == 400 for line in lines)
    assert "Got more than 8190 bytes" in lines[0]["reason"] and "url" in lines[1]["reason"].lower()
    assert not [line for line in lines if "exception" in line or "exc_info" in line]
    assert not [line for line in worker.lines if line.get("level") in ("error", "critical")]
    assert not [raw for raw in worker.raw if raw.startswith("Traceback")]


async def test_a_handlers_failure_stays_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The sidecar's runner keeps a handler's exception at ERROR with its traceback, while a
    malformed request served by the same runner is one INFO record without one."""
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("the handler's own bug")

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner = runner_for(app, Settings.load({}).sidecar)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.INFO):
            assert (await raw_request(port, "GET /broken HTTP/1.1\nHost: x\nConnection: close\n"))[0] == 500
            assert b" 400 " in await _send(port, HOSTILE["100 KB header"])
    finally:
        await runner.cleanup()
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.exc_info is not None and isinstance(failed.exc_info[1], RuntimeError)
    [malformed] = [r for r in caplog.records if r.getMessage() == MALFORMED]
    assert malformed.levelno == logging.INFO and malformed.exc_info is None
