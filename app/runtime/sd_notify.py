"""sd_notify without a dependency: READY=1, STOPPING=1 and WATCHDOG=1 over NOTIFY_SOCKET."""

from __future__ import annotations

import socket

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    def __init__(self, socket_path: str | None) -> None:
        self.address = socket_path
        if socket_path and socket_path.startswith("@"):
            self.address = "\0" + socket_path[1:]  # abstract namespace

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> None:
        """Send without blocking: it runs on the event loop, and a socket whose queue is full
        (nobody reading it, or a reader that fell behind) must cost a lost message, never a
        frozen loop. systemd reads as fast as it is written; a missed WATCHDOG=1 is sent again
        half a period later."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                s.connect(self.address)
                s.send(message.encode())
        except OSError as exc:  # BlockingIOError (queue full) included
            log.warning("sd_notify_failed", message=message, error=str(exc))
