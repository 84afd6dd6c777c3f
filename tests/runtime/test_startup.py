"""Start-up of every entry point (the worker, `workhorse`, `python -m app.trigger`) against the
Redis and PostgreSQL it is given: bad or unreachable URLs and hosts end in one line naming the
variable to fix, exit 2, never a traceback or a password; REDIS_HOST and rediss:// (verified,
with the CA given in the URL) are how it connects, with no embedded Redis started."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.queue import keys
from tests.support.tcp_redis import TcpRedis
from tests.support.worker import WorkerProcess, one_error_line, run_command, subprocess_env

EnvFactory = Callable[..., dict[str, str]]
SECRET = "hunter2-s3cret"


ENTRY_POINTS = [("app.cli", "queues"), ("app.trigger", "ping", "--queue", "sla-monitor"), ("app",)]


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
    ({"REDIS_URL": "garbage"}, "REDIS_URL"),
    ({"DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/db"}, "DATABASE_URL"),
    ({"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}, "REDIS_URL"),
    ({"DATABASE_URL": f"postgresql://u:{SECRET}@[::1"}, "DATABASE_URL"),
    ({"REDIS_URL": f"redis://u:{SECRET}@h:99999999/0"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://" + "a" * 50_000}, "REDIS_URL"),
    ({"REDIS_URL": ""}, "REDIS_URL (or REDIS_HOST)"),
    # Refusals that waiting will not change end at once, not after the connect timeout.
    ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=bogus"}, "DATABASE_URL"),
    ({"DATABASE_URL": f"postgresql://nobody:{SECRET}@127.0.0.1:5432/postgres"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://postgres@" + "h" * 300 + ":5432/db"}, "DATABASE_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:1/abc"}, "REDIS_URL"),
    ({"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:6379/0"}, "REDIS_URL"),
])
async def test_bad_or_unreachable_urls_end_in_one_line_naming_the_variable(
        make_env: EnvFactory, overrides: dict[str, str], variable: str) -> None:
    """`workhorse queues`, `python -m app.trigger ping` and the worker each exit 2 with one line
    naming the variable (DB_CONNECT_TIMEOUT_S=1 for the unreachable ones); the password is not
    echoed."""
    env = make_env(db_connect_timeout_s=1, **overrides)
    if overrides.get("REDIS_URL") == "":
        del env["REDIS_URL"]  # only DATABASE_URL set
    results = await asyncio.gather(*(run_command(env, *argv) for argv in ENTRY_POINTS))
    for argv, (code, out, err) in zip(ENTRY_POINTS, results, strict=True):
        line = one_error_line(err)
        assert code == 2 and variable in line, (argv, code, line)
        assert SECRET not in out + err


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[TcpRedis]:
    server = TcpRedis(tmp_path / "tcp-redis")
    server.start()
    yield server
    server.stop()


async def test_redis_host_and_port_are_used_and_no_embedded_redis_starts(
        make_env: EnvFactory, tcp_redis: TcpRedis, workhorse_home: Path) -> None:
    """REDIS_HOST/REDIS_PORT without REDIS_URL: the worker connects there (it answers a ping
    enqueued through that Redis) and starts no embedded Redis of its own."""
    env = make_env(redis_host="127.0.0.1", redis_port=tcp_redis.port)
    del env["REDIS_URL"]
    worker = WorkerProcess(subprocess_env(env), ("--queues", "sla-monitor"))
    await worker.start()
    try:
        await worker.wait_ready()
        code, out, err = await run_command(env, "app.trigger", "ping", "--queue", "sla-monitor", "--wait",
                                           "--timeout", "20")
        assert code == 0 and '"pong": true' in out, err
    finally:
        assert await worker.stop() == 0
    assert not worker.events("embedded_redis_started")
    assert not (workhorse_home / "embedded.json").exists() and not (workhorse_home / "redis").exists()
    direct = Redis(host="127.0.0.1", port=tcp_redis.port)
    try:
        assert await direct.exists(keys.RESULT_PREFIX + out.splitlines()[0].strip())
    finally:
        await direct.aclose()


async def test_an_unreachable_redis_host_names_redis_host(make_env: EnvFactory) -> None:
    """REDIS_HOST pointing at a closed loopback port fails in one line naming REDIS_HOST."""
    env = make_env(redis_host="127.0.0.1", redis_port=1, redis_password=SECRET, db_connect_timeout_s=1)
    del env["REDIS_URL"]
    code, out, err = await run_command(env, "app.cli", "queues")
    line = one_error_line(err)
    assert code == 2 and "REDIS_HOST" in line and SECRET not in out + err


async def test_rediss_refuses_a_server_whose_certificate_it_cannot_verify(
        make_env: EnvFactory, tmp_path: Path) -> None:
    """rediss:// verifies the server: a certificate from an unknown CA is one line, exit 2."""
    server = TcpRedis(tmp_path / "tls-redis", tls=True)
    server.start()
    try:
        env = make_env(redis_url=f"rediss://127.0.0.1:{server.port}/0", db_connect_timeout_s=1)
        code, _, err = await run_command(env, "app.cli", "queues")
    finally:
        server.stop()
    line = one_error_line(err)
    assert code == 2 and "REDIS_URL" in line and "CERTIFICATE_VERIFY_FAILED" in line


async def test_rediss_with_the_ca_given_in_the_url_connects(make_env: EnvFactory, tmp_path: Path) -> None:
    """rediss://...?ssl_ca_certs=CA (redis-py's own URL parameter) verifies against that CA."""
    server = TcpRedis(tmp_path / "tls-redis", tls=True)
    server.start()
    try:
        env = make_env(redis_url=f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={server.ca}",
                       db_connect_timeout_s=2)
        code, out, err = await run_command(env, "app.cli", "queues", "--json")
    finally:
        server.stop()
    assert code == 0, err
    assert "total" in json.loads(out)
