"""A client of one worker's HTTP API (/api/v1) over a real socket, and the tokens the web tests
give the worker."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.config import Settings
from app.runtime.process import Process
from tests.support.worker import in_process_worker

QUEUE = "intake-routing"
FULL, READ_ONLY = "full-secret-token", "read-secret-token"
TOKENS = f"{FULL},ro:{READ_ONLY}"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        found: dict[str, Any] = self.body["error"]
        return found


@dataclass
class ApiClient:
    """Speaks to one worker's /api/v1 over a real socket."""

    port: int
    process: Process
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, *, token: str | None = FULL, json_body: Any = None,
                   data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data, sent["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        # BytesIO: aiohttp warns (an error here) when a large body is given as bytes.
        async with self.session.request(method, f"http://127.0.0.1:{self.port}/api/v1{path}",
                                        data=None if data is None else io.BytesIO(data), headers=sent) as r:
            assert r.content_type == "application/json", (r.status, await r.text())
            return Reply(r.status, await r.json(), dict(r.headers))


@asynccontextmanager
async def api_worker(settings: Settings, queues: list[str] | None = None) -> AsyncIterator[ApiClient]:
    async with in_process_worker(settings, queues or [QUEUE]) as process, aiohttp.ClientSession() as session:
        yield ApiClient(settings.health.port, process, session)
