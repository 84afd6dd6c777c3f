"""Node programs as a web app runs them: the npm packages of tests/node/package.json, pinned by
its package-lock.json and installed with `npm ci` into tests/node/node_modules on first use (in
CI too: Node and npm are on every machine, and only the npm registry needs to be reachable)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from app.config import PROJECT_ROOT
from tests.support.system import require_binary

NODE_DIR = PROJECT_ROOT / "tests" / "node"
NODE_MODULES = NODE_DIR / "node_modules"


def install() -> Path:
    """tests/node/node_modules as package-lock.json pins it: `npm ci` the first time and whenever
    the lock file has changed since (npm ci empties node_modules, marker included)."""
    require_binary("node")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    marker = NODE_MODULES / f".installed-{zlib.crc32(lock):08x}"
    if not marker.exists():
        # --ignore-scripts: none of the pinned packages needs an install script, and a new
        # dependency that wants one should say so here rather than run unseen.
        done = subprocess.run([require_binary("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                               "--loglevel=error"], cwd=NODE_DIR, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stderr[-3000:]}")
        marker.touch()
    return NODE_MODULES


def workspace(path: Path) -> Path:
    """`path` made a small ES-module project whose packages are tests/node's (node_modules is a
    link to them), as a web app's folder is: Node and tsc find `openapi-fetch` and `pg` there."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "node_modules").symlink_to(install(), target_is_directory=True)
    (path / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    return path


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The last line of stdout, parsed: what the program printed as its answer (JSON from
        another process: `Any`, read by the test that knows its shape)."""
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return json.loads(self.stdout.strip().splitlines()[-1])


async def run(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, stdin: str = "",
              timeout_s: float = 60) -> Completed:
    """`args` to completion in `cwd`, with this environment plus `env`."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env={**os.environ, **(env or {})}, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate(stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


def pg_environment(database_url: str) -> dict[str, str]:
    """The PG* variables that point the `pg` package (like libpq) at `database_url`, whether
    that is TCP or, as the embedded PostgreSQL is, a unix socket (`?host=/its/directory`)."""
    parts = urlsplit(database_url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    env = {"PGHOST": parts.hostname or query.get("host", ""), "PGPORT": str(parts.port or query.get("port", 5432)),
           "PGUSER": unquote(parts.username or query.get("user", "postgres")),
           "PGPASSWORD": unquote(parts.password or query.get("password", "")),
           "PGDATABASE": unquote(parts.path.lstrip("/")) or query.get("dbname", "postgres")}
    return {name: value for name, value in env.items() if value}
