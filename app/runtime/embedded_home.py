"""One embedded default per WORKHORSE_HOME, shared by the processes that use it, stopped by the last.

The worker, a trigger from a second terminal and a second worker may all start at once with
nothing configured. Decisions, all made with flock locks under the home (they go with their
process, kill -9 included, which a pid file does not):

- Start-up is serialised by an exclusive lock on `embedded.lock`. Its holder starts what does
  not run (Redis, PostgreSQL, the guard) and registers; a process finding it held waits, then
  finds the servers running and attaches. Servers are recognised by their command lines
  (app/runtime/embedded.py), so there is never a second server on one socket or AOF, a server
  left by a dead owner is adopted rather than doubled, and only the file of a server that is
  gone is removed.
- A process using the servers holds an exclusive lock on a file of its own in `users/`, until
  it leaves or dies. One file per user (not one shared lock) lets the guard below wait for a
  user without ever holding the lock that a leaving process tests.
- Last one out: a leaving process takes the start lock, drops its file and stops the servers
  if no other user's file is locked. The owner that started them is a user like any other: it
  stopping while others use them leaves them running. Chosen over a hand-over: nothing has to
  move, since the servers run detached (their own sessions, no parent to outlive).
- The guard (`python -m app.runtime.embedded_guard`, detached, holding `embedded.guard`) waits
  on the users' locks and does what the last one out would have done when the last users died
  without leaving (kill -9, OOM). A guard that was itself killed is replaced by the next process
  that attaches.
- A command finding nothing running starts the same servers on the same data: a job it
  enqueues stays in the AOF that the worker loads. `Attachment.alone` tells it that no worker
  used them (the trigger says so in one line); with start=False it is told that nothing runs.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from app.runtime.embedded import EmbeddedUnavailable, RedisServer, postmaster, start_postgres, stop_postgres

if TYPE_CHECKING:
    from app.config import Settings

log = structlog.get_logger(__name__)

LOCK_FILE = "embedded.lock"
GUARD_FILE = "embedded.guard"
GUARD_LOG = "guard.log"
USERS_DIR = "users"
GUARD_START_TIMEOUT_S = 30.0
# Where `python -m app...` imports this package from, whatever the caller's directory.
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_exclusive(path: Path) -> int | None:
    """An fd holding the exclusive lock on `path`, or None while someone else holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def start_lock(home: Path) -> Iterator[None]:
    """Held while the servers of `home` start or stop; waits while another process holds it."""
    fd = _open(home / LOCK_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("embedded_waiting_for_start", home=str(home))
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def live_users(home: Path) -> int:
    """How many processes use the servers (under the start lock); forgets those that are gone."""
    count = 0
    for path in (home / USERS_DIR).glob("*.lock"):
        fd = _try_exclusive(path)
        if fd is None:
            count += path.exists()  # held by its user (a file that just went was not counted)
            continue
        path.unlink(missing_ok=True)  # its process died without leaving
        os.close(fd)
    return count


def _register(home: Path) -> tuple[int, Path]:
    (home / USERS_DIR).mkdir(exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".lock", dir=home / USERS_DIR)
    # Granted at once, or once a guard that glimpsed the new file lets go of it (it does at once).
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, Path(name)


def guarded(home: Path) -> bool:
    """Whether a guard holds the home."""
    fd = _try_exclusive(home / GUARD_FILE)
    if fd is None:
        return (home / GUARD_FILE).exists()
    os.close(fd)
    return False


def running(home: Path) -> bool:
    """Whether both servers of the home run."""
    return RedisServer(home / "redis").answers() and postmaster(home / "pg") is not None


def ensure_servers(home: Path) -> tuple[str, str]:
    """Start what does not run (under the start lock); the URLs of both servers."""
    redis = RedisServer(home / "redis")
    if not redis.answers():
        # A server on the socket that does not answer is one whose owner died while it
        # started, or a hung one: it goes (its AOF is intact) before a new one starts.
        redis.stop_any()
        redis.start(detach=True)
        log.info("embedded_redis_started", url=redis.url)
    was_running = postmaster(home / "pg") is not None
    database_url = start_postgres(home / "pg")
    if not was_running:
        log.info("embedded_postgres_started", url=database_url)
    return redis.url, database_url


def stop_servers(home: Path) -> None:
    """Stop both servers (under the start lock, with no user left)."""
    RedisServer(home / "redis").stop_any()
    stop_postgres(home / "pg")
    log.info("embedded_stopped", home=str(home))


def _stop_if_unused(home: Path) -> None:
    """After a failed start: what did start goes, unless someone uses it; what went wrong
    stopping it is logged, not raised over the failure being reported."""
    try:
        if live_users(home) == 0:
            stop_servers(home)
    except Exception as exc:
        log.warning("embedded_stop_failed", home=str(home), error=str(exc))


def ensure_guard(home: Path) -> None:
    """Start a guard unless one runs (under the start lock, after registering)."""
    if guarded(home):
        return
    with (home / GUARD_LOG).open("ab") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.runtime.embedded_guard", str(home)], cwd=_IMPORT_ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
    assert proc.stdout is not None
    with proc.stdout:
        ready, _, _ = select.select([proc.stdout], [], [], GUARD_START_TIMEOUT_S)
        answer = proc.stdout.readline().strip() if ready else b""
    try:
        proc.wait(GUARD_START_TIMEOUT_S)  # the guard forks off and this process exits at once
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if answer not in (b"guarding", b"guarded"):
        raise EmbeddedUnavailable(f"the embedded default's guard did not start; see {home / GUARD_LOG}")


@dataclass
class Attachment:
    """This process's use of the embedded default in `home`, until leave()."""

    home: Path
    redis_url: str
    database_url: str
    alone: bool
    """No other process used the servers when this one attached: no worker runs on them."""
    _fd: int | None
    _path: Path

    def leave(self) -> None:
        """Stop using the servers; the last to leave stops them."""
        if self._fd is None:
            return
        with start_lock(self.home):
            self._path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            if live_users(self.home) == 0:
                stop_servers(self.home)


def attach(home: Path, *, start: bool) -> Attachment | None:
    """Use the embedded default of `home`, starting what does not run; None if nothing runs
    and `start` is False."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    with start_lock(home):
        if not start and not running(home):
            return None
        alone = live_users(home) == 0
        fd, path = _register(home)
        try:
            redis_url, database_url = ensure_servers(home)
            ensure_guard(home)
        except BaseException:
            path.unlink(missing_ok=True)
            os.close(fd)
            _stop_if_unused(home)  # nothing half-started stays behind
            raise
    log.info("embedded_attached", home=str(home), alone=alone)
    return Attachment(home, redis_url, database_url, alone, fd, path)


def configured(settings: Settings) -> tuple[str, str]:
    """The configured URLs, ("", "") when none is.

    Raises EmbeddedUnavailable naming the variable when only one of Redis and PostgreSQL is
    configured (the embedded default never stands in for half a production set-up)."""
    redis_url, database_url = settings.redis.dsn, settings.database.url
    if redis_url and database_url:
        return redis_url, database_url
    if settings.services_configured:
        missing = "DATABASE_URL" if redis_url else "REDIS_URL (or REDIS_HOST)"
        given = settings.redis.variable if redis_url else "DATABASE_URL"
        raise EmbeddedUnavailable(f"invalid setting {missing}: not set while {given} is; set both, or neither "
                                  "for the embedded default")
    return "", ""


def resolve(settings: Settings, *, start: bool = True) -> tuple[str, str, Attachment | None]:
    """The URLs to use: configured ones, else the embedded default's (started unless `start` is
    False: then EmbeddedUnavailable says that none runs)."""
    redis_url, database_url = configured(settings)
    if redis_url and database_url:
        return redis_url, database_url, None
    attached = attach(settings.workhorse.home, start=start)
    if attached is None:
        raise EmbeddedUnavailable(f"no embedded default runs under {settings.workhorse.home}: start the worker "
                                  "(make run), or set REDIS_URL and DATABASE_URL")
    return attached.redis_url, attached.database_url, attached
