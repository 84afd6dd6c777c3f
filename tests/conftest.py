"""Fixtures: real Redis and PostgreSQL (once per session), a clean slate per test, settings
built from an explicit environment, and the imitated services (SMTP, Twilio, OpenAI) on 127.0.0.1.
Helpers that are not fixtures live in tests/support/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.db import migrate
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.runtime.startup import open_resources
from tests.fakes.openai import FakeOpenAI, running_fake_openai
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.support.services import ServiceUrls, free_port, session_services
from tests.support.system import require_binary

# Tables whose rows each test starts without (everything but the migrations record).
_KEEP_TABLES = {"schema_migrations"}


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceUrls]:
    with session_services() as urls:
        yield urls


@pytest.fixture(scope="session")
async def migrated(services: ServiceUrls) -> ServiceUrls:
    await migrate.migrate(services.database_url)
    return services


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass their settings explicitly; nothing leaks in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("REDIS_", "DATABASE_", "WORKHORSE_", "SMTP_", "TWILIO_", "OPENAI_", "NOTIFY_")):
            monkeypatch.delenv(name)


@pytest.fixture
async def clean(migrated: ServiceUrls) -> ServiceUrls:
    """Start from empty Redis and empty tables."""
    redis = Redis.from_url(migrated.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(migrated.database_url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [r["tablename"] for r in rows]
        wipe = [f'"{t}"' for t in tables if t not in _KEEP_TABLES]
        if wipe:
            await conn.execute(f"TRUNCATE {', '.join(wipe)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return migrated


@pytest.fixture
def workhorse_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def make_env(clean: ServiceUrls, workhorse_home: Path) -> Callable[..., dict[str, str]]:
    """The environment a worker of this test runs with (fast timings, free health port)."""
    def make(**overrides: Any) -> dict[str, str]:
        env = {
            "REDIS_URL": clean.redis_url,
            "DATABASE_URL": clean.database_url,
            "WORKHORSE_HOME": str(workhorse_home),
            "HEALTH_PORT": str(free_port()),
            "WORKHORSE_EXTRA_JOBS": "tests.support.jobs",
            "JOB_LOCK_TTL_S": "3",
            "JOB_HEARTBEAT_S": "1",
            "SHUTDOWN_TIMEOUT_MS": "5000",
            "DB_CONNECT_TIMEOUT_S": "10",
            "STORAGE_DIR": str(workhorse_home / "storage"),
        }
        env.update({k.upper(): str(v) for k, v in overrides.items()})
        return env

    return make


@pytest.fixture
def make_settings(make_env: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings.load(make_env(**overrides))

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def res(settings: Settings) -> AsyncIterator[Resources]:
    """Resources of the test process itself: enqueue, inspect Redis and the database."""
    async with open_resources(settings, build_registry(settings), start_embedded=False) as resources:
        yield resources


@pytest.fixture
def tesseract() -> str:
    """The tesseract binary (`pytestmark = pytest.mark.usefixtures("tesseract")` in OCR tests)."""
    return require_binary("tesseract")


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""
    sink = SmtpSink()
    await sink.start()
    try:
        yield sink
    finally:
        sink.gate.set()
        await sink.stop()


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioFake]:
    """Twilio's Messages API on 127.0.0.1, for the real twilio client."""
    fake = TwilioFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """An OpenAI-compatible server on 127.0.0.1 (embeddings, chat, vision), for the real client."""
    async with running_fake_openai() as fake:
        yield fake


@pytest.fixture
def openai_settings(make_settings: Callable[..., Settings], fake_openai: FakeOpenAI) -> Callable[..., Settings]:
    """make_settings with the model provider pointed at `fake_openai`."""
    def make(**overrides: Any) -> Settings:
        return make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url, **overrides)

    return make
