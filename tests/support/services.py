"""Real Redis and PostgreSQL for the tests: from TEST_REDIS_URL / TEST_DATABASE_URL when set,
else the embedded default, started once per session."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.runtime.embedded import Embedded


@dataclass(frozen=True)
class ServiceUrls:
    redis_url: str
    database_url: str


@contextmanager
def session_services() -> Iterator[ServiceUrls]:
    redis_url = os.environ.get("TEST_REDIS_URL")
    database_url = os.environ.get("TEST_DATABASE_URL")
    home = Path(tempfile.mkdtemp(prefix="wh-test-"))
    started = Embedded(home)
    try:
        redis_url = redis_url or started.start_redis()
        database_url = database_url or started.start_postgres()
        yield ServiceUrls(redis_url, database_url)
    finally:
        started.stop()
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
