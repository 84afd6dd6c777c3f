"""The sidecar stays answerable: slow or idle clients are cut off, /health answers like
/health/live, and /health/detailed shows the effective configuration without a secret."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from app.config import Settings
from app.web.site import SILENT_GRACE_S
from tests.support.http import get
from tests.support.worker import in_process_worker


async def _half_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that sends half a request line and then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health/li")
    await writer.drain()
    return reader, writer


async def test_half_requests_neither_lock_out_health_nor_stay_open(
        make_settings: Callable[..., Settings]) -> None:
    """Twice SIDECAR_MAX_CONNECTIONS clients each send half a request line and nothing more:
    /health/live still answers within a second (a connection that has sent no request a moment
    after its accept is closed to make room; one that sent its request never is), and every idle
    client is closed without an answer within SIDECAR_HEADER_TIMEOUT_S."""
    settings = make_settings(sidecar_header_timeout_s=2, sidecar_max_connections=20)
    async with in_process_worker(settings):
        port = settings.health.port
        opened = time.monotonic()
        clients = [await _half_request(port) for _ in range(40)]
        started = time.monotonic()
        assert await get(port, "/health/live") == (200, {"status": "ok"})
        assert time.monotonic() - started < 4 * SILENT_GRACE_S
        async with asyncio.timeout(6):
            dropped = await asyncio.gather(*(reader.read() for reader, _ in clients))
        closed_after_s = time.monotonic() - opened
        for _, writer in clients:
            writer.close()
        assert dropped == [b""] * 40, "a half request got an answer instead of being dropped"
        assert closed_after_s < 5, f"idle sockets stayed open {closed_after_s:.1f}s"
        assert await get(port, "/health/live") == (200, {"status": "ok"})


async def test_a_client_dripping_its_headers_is_cut_off_at_the_header_timeout(
        make_settings: Callable[..., Settings]) -> None:
    """One byte every 0.2 s keeps a connection busy, but not past SIDECAR_HEADER_TIMEOUT_S."""
    settings = make_settings(sidecar_header_timeout_s=1)
    async with in_process_worker(settings):
        reader, writer = await _half_request(settings.health.port)

        async def drip() -> None:
            for _ in range(50):
                await asyncio.sleep(0.2)
                writer.write(b"v")

        dripping = asyncio.create_task(drip())
        started = time.monotonic()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        dripping.cancel()
        writer.close()
        assert time.monotonic() - started < 3


async def test_health_answers_like_live_and_detailed_shows_config_without_secrets(
        make_settings: Callable[..., Settings]) -> None:
    """`GET /health` is /health/live (the runbook curls it); /health/detailed has a `config`
    section with modes, timings, concurrency, timeouts and retry policies of the served queues,
    and no secret value anywhere, not even one in the database URL's query string."""
    database_url = make_settings().database.url
    assert database_url is not None
    database_url += ("&" if "?" in database_url else "?") + "sslpassword=s3cret-sslpw"
    settings = make_settings(
        smtp_password="s3cret-smtp", openai_api_key="sk-s3cret-key", webhook_secret="s3cret-hook",
        twilio_auth_token="s3cret-twilio", database_url=database_url,
        shutdown_timeout_ms=4321, poll_fallback_ms=750, intake_routing_attempts=7)
    async with in_process_worker(settings, ["intake-routing", "sla-monitor"]):
        port = settings.health.port
        assert await get(port, "/health") == (200, {"status": "ok"})
        code, detail = await get(port, "/health/detailed")
    assert code == 200
    config = detail["config"]
    assert config["servedQueues"] == ["intake-routing", "sla-monitor"]
    assert config["shutdownTimeoutMs"] == 4321 and config["pollFallbackMs"] == 750
    assert config["wakeMode"] == "pubsub"
    intake = config["queues"]["intake-routing"]
    assert intake["concurrency"] == 5 and intake["timeoutS"] > 0
    assert intake["retry"]["attempts"] == 7 and set(intake["retry"]) == {
        "attempts", "baseDelayS", "maxDelayS", "factor", "jitter"}
    assert set(config["queues"]) == {"intake-routing", "sla-monitor"}
    assert "sslpassword=***" in detail["dependencies"]["postgres"]["url"]
    assert "s3cret" not in json.dumps(detail)
