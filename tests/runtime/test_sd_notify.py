"""sd_notify from the event loop never blocks it: a NOTIFY_SOCKET nobody reads costs messages,
not the process."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from app.runtime.sd_notify import Notifier


def test_a_socket_nobody_reads_never_blocks_the_sender(tmp_path: Path) -> None:
    """Two hundred WATCHDOG=1 to a datagram socket that is never read (its queue fills after a
    dozen or so): every send returns at once, the first ones are delivered, the rest dropped."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier(str(path))

        def send_all() -> None:
            for _ in range(200):
                notifier.notify("WATCHDOG=1")

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        sender.join(timeout=5)
        assert not sender.is_alive(), "notify() blocked on a full socket"
        server.setblocking(False)
        assert server.recv(64) == b"WATCHDOG=1"
