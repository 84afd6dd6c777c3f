"""Fixtures of the calendar sync tests: the Google Calendar v3 + OAuth imitation on 127.0.0.1, and
settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.config import Settings
from tests.fakes.google import GoogleFake
from tests.support.calendar_sync import KEY


@pytest.fixture
async def google() -> AsyncIterator[GoogleFake]:
    """Google Calendar v3 and its OAuth token endpoint on 127.0.0.1."""
    fake = GoogleFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def sync_settings(make_settings: Callable[..., Settings], google: GoogleFake) -> Callable[..., Settings]:
    """Settings pointing at the fake, with fast retries and a breaker that stays out of the way."""
    def make(**env: Any) -> Settings:
        return make_settings(**google.env(), CALENDAR_TOKEN_KEYS=KEY, BREAKER_FAILURE_THRESHOLD=100,
                             CALENDAR_SYNC_BASE_DELAY_S=0.05, CALENDAR_SYNC_PAGE_SIZE=250, **env)
    return make
