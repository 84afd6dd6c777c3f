"""The machine's redis-server on a TCP port of 127.0.0.1, optionally TLS only (with a CA made for
the test), for the ways Redis is reached other than the tests' unix socket."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.support.services import free_port
from tests.support.system import require_binary
from tests.support.tls import make_certificates


class TcpRedis:
    """The machine's redis-server on 127.0.0.1 (TCP, optionally TLS only), for Redis
    configured by host and port rather than the tests' unix socket."""

    def __init__(self, directory: Path, *, tls: bool = False) -> None:
        self.directory, self.tls, self.port = directory, tls, free_port()
        self.ca = directory / "ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = require_binary("redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), *make_certificates(self.directory).redis_args()]
        else:
            ports = ["--port", str(self.port)]
        self.proc = subprocess.Popen([binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.directory)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("redis-server did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
