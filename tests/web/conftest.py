"""Fixtures of the web tests: a worker serving the HTTP API, with a full and a read-only token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from app.config import Settings
from tests.support.api import TOKENS, ApiClient, api_worker


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[ApiClient]:
    """A worker serving intake-routing, with a full and a read-only token."""
    async with api_worker(make_settings(api_token=TOKENS)) as client:
        yield client
