"""Redis and PostgreSQL run on a host of a tests/support/netns.py network, reached over TCP on
that host's address (a partition cuts them off like any other traffic).

PostgreSQL is the embedded distribution's (pgserver's binaries, with pgvector), in a data
directory of its own, run as pgserver's system user (postgres refuses root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.support.netns import Host
from tests.support.system import require_binary

PG_USER = "pgserver"


@dataclass
class HostedServers:
    host: Host
    redis_port: int = 6379
    pg_port: int = 5432
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _pgdata: Path | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host.address}:{self.redis_port}/0"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@{self.host.address}:{self.pg_port}/postgres"

    async def start(self) -> None:
        await asyncio.to_thread(self._start_redis)
        await asyncio.to_thread(self._start_postgres)
        await self._wait_for_both()

    def _start_redis(self) -> None:
        self.procs.append(subprocess.Popen(self.host.command([
            require_binary("redis-server"), "--bind", self.host.address, "--port", str(self.redis_port),
            "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _start_postgres(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        account = _pg_account()
        self._pgdata = Path(tempfile.mkdtemp(prefix="wh-netns-pg-"))
        os.chown(self._pgdata, account.pw_uid, account.pw_gid)
        # setpriv execs postgres itself (runuser would stay its parent): a signal reaches it.
        as_pg = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--"]
        subprocess.run([*as_pg, str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self._pgdata), "--auth=trust",
                        "-U", "postgres", "--encoding=utf8"], check=True, capture_output=True)
        with (self._pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.host.address.rsplit('.', 1)[0]}.0/24 trust\n")
        self.procs.append(subprocess.Popen(self.host.command([
            *as_pg, str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self._pgdata),
            "-c", f"listen_addresses={self.host.address}", "-c", f"port={self.pg_port}",
            "-c", f"unix_socket_directories={self._pgdata}", "-c", "fsync=off"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    async def _wait_for_both(self) -> None:
        async with asyncio.timeout(60):
            while True:
                try:
                    redis = Redis.from_url(self.redis_url, socket_connect_timeout=1)
                    try:
                        await redis.ping()
                    finally:
                        await redis.aclose()
                    conn = await asyncpg.connect(self.database_url, timeout=1)
                    await conn.close()
                    return
                except Exception:  # not up yet (refused, starting, timed out)
                    await asyncio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)


def _pg_account() -> pwd.struct_passwd:
    """pgserver's system user (it makes it when it first starts as root, as the suite's own
    PostgreSQL did); made here too if missing."""
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", PG_USER], check=True, capture_output=True)
        return pwd.getpwnam(PG_USER)
