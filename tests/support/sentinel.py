"""A Redis replication group under Sentinel on 127.0.0.1: a primary, a replica and three
`redis-server --sentinel` processes watching them, each on a free port, optionally with
passwords (the servers' and the sentinels' own) and TLS only, as production runs it.

The sentinels declare the primary down after one second without an answer (production uses
tens of seconds), so a failover completes in a few seconds. With `replication_proxy` the
replica reaches its primary through a TcpProxy, which a test can make hold the replication
stream back (a partition between the two, neither of them told); with `sentinels=0` the group is
the primary and its replica alone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis import Redis

from tests.support.services import free_port
from tests.support.system import require_binary
from tests.support.tcp_proxy import TcpProxy
from tests.support.tls import Certificates, make_certificates

MASTER = "mymaster"
DOWN_AFTER_MS = 1000


class SentinelGroup:
    def __init__(self, directory: Path, *, password: str | None = None, sentinel_password: str | None = None,
                 tls: bool = False, sentinels: int = 3, replication_proxy: bool = False) -> None:
        self.directory = directory
        self.password, self.sentinel_password = password, sentinel_password
        self.certs: Certificates | None = make_certificates(directory / "tls") if tls else None
        self.ports = {"primary": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.proxy = TcpProxy(self.ports["primary"]) if replication_proxy else None

    # -- what a client is given ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Workhorse URL of the group (REDIS_URL=redis+sentinel://...)."""
        scheme = "rediss+sentinel" if self.certs else "redis+sentinel"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        query = []
        if self.sentinel_password:
            query.append(f"sentinel_password={quote(self.sentinel_password, safe='')}")
        if self.certs:
            query.append(f"ssl_ca_certs={self.certs.ca}")
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"{scheme}://{auth}{hosts}/{MASTER}/0" + (f"?{'&'.join(query)}" if query else "")

    def env(self) -> dict[str, str]:
        """The same as REDIS_SENTINELS and friends (no TLS: REDIS_TLS takes the system's CAs)."""
        assert self.certs is None
        env = {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
               "REDIS_SENTINEL_MASTER": MASTER}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def client(self, role_or_port: str | int, *, sentinel: bool = False) -> Redis:
        """A direct client of one server (`primary`, `replica`) or of a sentinel (by port)."""
        port = self.ports[role_or_port] if isinstance(role_or_port, str) else role_or_port
        kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": port, "socket_timeout": 5}
        password = self.sentinel_password if sentinel else self.password
        if password:
            kwargs["password"] = password
        if self.certs:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.certs.ca))
        return Redis(**kwargs)

    # -- the processes -----------------------------------------------------------------------------

    def start(self) -> None:
        self._start_server("primary")
        upstream = self.proxy.start().port if self.proxy else self.ports["primary"]
        self._start_server("replica", "--replicaof", "127.0.0.1", str(upstream))
        self._wait(lambda: self.client("replica").info("replication")["master_link_status"] == "up",
                   "the replica to sync")
        for n, port in enumerate(self.sentinel_ports):
            self._start_sentinel(n, port)
        if self.sentinel_ports:
            self._wait(self._sentinels_agree, "the sentinels to find the replica and each other")

    def _server_args(self, port: int) -> list[str]:
        # No 5 s wait before a full sync (the diskless default): a replica joins at once.
        args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        if self.certs:
            args += ["--port", "0", "--tls-port", str(port), "--tls-replication", "yes", *self.certs.redis_args()]
        else:
            args += ["--port", str(port)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    def _start_server(self, role: str, *extra: str) -> None:
        workdir = self.directory / role
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs[role] = subprocess.Popen(
            [require_binary("redis-server"), *self._server_args(self.ports[role]), "--dir", str(workdir), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(lambda: self.client(role).ping(), f"the {role} to answer")

    def _start_sentinel(self, n: int, port: int) -> None:
        workdir = self.directory / f"sentinel-{n}"
        workdir.mkdir(parents=True, exist_ok=True)
        lines = ["bind 127.0.0.1", f"dir {workdir}",
                 f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['primary']} 2",
                 f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {MASTER} 10000", f"sentinel parallel-syncs {MASTER} 1"]
        if self.certs:
            lines += ["port 0", f"tls-port {port}", "tls-replication yes",
                      f"tls-cert-file {self.certs.cert}", f"tls-key-file {self.certs.key}",
                      f"tls-ca-cert-file {self.certs.ca}", "tls-auth-clients no"]
        else:
            lines.append(f"port {port}")
        if self.password:
            lines.append(f"sentinel auth-pass {MASTER} {self.password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        conf = workdir / "sentinel.conf"  # a sentinel rewrites its file: one each
        conf.write_text("\n".join(lines) + "\n")
        self.procs[f"sentinel-{n}"] = subprocess.Popen(
            [require_binary("redis-server"), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state: Any = self.client(port, sentinel=True).sentinel_master(MASTER)
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return False
        return True

    @staticmethod
    def _wait(check: Any, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")

    # -- faults ------------------------------------------------------------------------------------

    def primary_address(self) -> tuple[str, int]:
        """Where the sentinels say the primary is now."""
        found: Any = self.client(self.sentinel_ports[0], sentinel=True).sentinel_get_master_addr_by_name(MASTER)
        host, port = found
        return str(host), int(port)

    def kill(self, role: str) -> float:
        """SIGKILL the server of `role` (as a host losing power would stop it); when, monotonic."""
        proc = self.procs.pop(role)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return time.monotonic()

    def wait_failover(self, timeout_s: float = 30.0) -> None:
        """Until the sentinels name the replica as the primary, and the old primary, if it runs,
        has been turned into its replica (until then it still takes writes: Sentinel's window)."""
        self._wait(lambda: self.primary_address()[1] == self.ports["replica"], "the failover", timeout_s)
        if "primary" in self.procs:
            self._wait(lambda: self.client("primary").info("replication")["role"] == "slave",
                       "the old primary to be demoted", timeout_s)

    def promote_replica(self) -> None:
        """What Sentinel does to the replica in a failover: REPLICAOF NO ONE."""
        self.client("replica").replicaof("NO", "ONE")

    def sentinel_failover(self) -> None:
        """SENTINEL FAILOVER: promote the replica now, the primary alive (it becomes a replica)."""
        self.client(self.sentinel_ports[0], sentinel=True).sentinel_failover(MASTER)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
