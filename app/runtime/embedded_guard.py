"""`python -m app.runtime.embedded_guard HOME`: stops the embedded default when its users died.

A user leaving normally stops the servers itself when it is the last (app/runtime/
embedded_home.py); a user killed -9 cannot. The guard, one per home (it holds `embedded.guard`),
waits on each user's lock in turn, and once the users it waited for are gone checks again under
the start lock: nobody left, it stops the servers and exits; somebody attached meanwhile, it
waits on them. It detaches from the process that started it (a double fork: it is nobody's
child, like the servers), says `guarding` (or `guarded`, when another guard holds the home) on
standard output, and logs to HOME/guard.log.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from app import logs
from app.runtime.embedded_home import GUARD_FILE, USERS_DIR, live_users, start_lock, stop_servers

log = structlog.get_logger(__name__)


def _wait_released(path: Path) -> None:
    """Block until nobody holds the lock on `path` (its user left or died)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def guard(home: Path, guard_fd: int) -> None:
    """Wait for the users to go; stop the servers when no one uses them; release the guard lock."""
    while True:
        for path in sorted((home / USERS_DIR).glob("*.lock")):
            _wait_released(path)
        with start_lock(home):
            if live_users(home) == 0:
                stop_servers(home)
                # Released before the start lock: whoever takes that next sees no guard and
                # starts one with the servers.
                os.close(guard_fd)
                log.info("embedded_guard_stopped", home=str(home))
                return


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m app.runtime.embedded_guard HOME", file=sys.stderr)
        return 2
    home = Path(args[0])
    if os.fork() > 0:
        os._exit(0)  # the starter waits for this process only; the guard goes on in the child
    logs.configure("INFO", "json")
    guard_fd = os.open(home / GUARD_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(guard_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("guarded", flush=True)
        return 0
    print("guarding", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the starter has read its answer and closed the pipe
    os.close(devnull)
    log.info("embedded_guard_started", home=str(home), pid=os.getpid())
    try:
        guard(home, guard_fd)
    except Exception:
        log.exception("embedded_guard_failed", home=str(home))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
