"""`python -m tests.support.sandbox_probe STATE_DIR`: what a process finds of its sandbox, printed
as JSON, so a test can tell that tests/support/confine.py imposed something and not nothing."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _errno_of(call: Callable[[], object]) -> int:
    """0 when `call` succeeds, else the errno it failed with."""
    try:
        call()
    except OSError as exc:
        return exc.errno or -1
    return 0


def _unshare_mount_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare")


def _create(path: Path) -> None:
    path.write_text("probe")


def observe(state_dir: Path) -> dict[str, Any]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    written = state_dir / "probe"
    return {
        "status": {k: status[k].strip() for k in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp")},
        "uid_map": Path("/proc/self/uid_map").read_text().split(),
        "proc_meminfo": Path("/proc/meminfo").exists(),
        "dev": sorted(os.listdir("/dev")),
        "write_usr": _errno_of(lambda: _create(Path("/usr/workhorse-probe"))),
        "write_state": _errno_of(lambda: _create(written)),
        "state_mode": oct(written.stat().st_mode & 0o777) if written.exists() else None,
        "socket_netlink": _errno_of(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()),
        "socket_inet": _errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
        "sched_setaffinity": _errno_of(lambda: os.sched_setaffinity(0, {0})),
        "chown": _errno_of(lambda: os.chown(written, 0, 0)),
        "unshare": _errno_of(_unshare_mount_namespace),
        "nice": _errno_of(lambda: os.nice(5)),
    }


if __name__ == "__main__":
    print(json.dumps(observe(Path(sys.argv[1]))))
