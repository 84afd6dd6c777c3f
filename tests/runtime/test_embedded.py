"""The embedded default: with no REDIS_URL / DATABASE_URL the processes of one WORKHORSE_HOME share
one Redis and one PostgreSQL, whoever starts first and in whatever order they stop or die.

Each test starts real processes (`python -m app`, `python -m app.trigger`, `python -m app.cli`) on
a home copied from one migrated once for the module, and checks what a user sees: the jobs ran,
the process table holds one server of each kind per home, the servers' own logs say how many
have ever started, and nothing is left running once everyone has gone.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.runtime.embedded import EmbeddedUnavailable, RedisServer
from tests.support.embedded import all_exited, exited, guard_pids, processes_of, starts
from tests.support.services import free_port
from tests.support.worker import WorkerProcess, run_command, start_worker, subprocess_env

PING = ("ping", "--queue", "sla-monitor")


def home_env(home: Path) -> dict[str, str]:
    return {"WORKHORSE_HOME": str(home), "HEALTH_PORT": str(free_port())}


@pytest.fixture(scope="module")
def homes() -> Iterator[Path]:
    """Where this module's homes live: not under tmp_path, whose root is mode 0700 (and set back
    to it by any pytest starting meanwhile), which PostgreSQL, run by pgserver as its own user when
    the tests run as root, cannot traverse."""
    root = Path(tempfile.mkdtemp(prefix="wh-embedded-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def template(homes: Path) -> Path:
    """A home whose database has the schema (one cold start for the module), nothing running."""
    home = homes / "template"
    code, _, err = await run_command(home_env(home), "app.cli", "migrate", timeout_s=120)
    assert code == 0, err
    await all_exited(guard_pids(home))
    return home


@pytest.fixture
def home(template: Path, homes: Path) -> Path:
    """This test's home: a copy of the template (owners kept: PostgreSQL insists on them)."""
    home = Path(tempfile.mkdtemp(dir=homes)) / "wh"
    subprocess.run(["cp", "-a", str(template), str(home)], check=True)
    return home


async def assert_all_gone(home: Path) -> None:
    """Every server and guard the home has had exits, and its socket goes with its server."""
    await all_exited(guard_pids(home))
    assert processes_of(home).all == []
    assert not (home / "redis" / "redis.sock").exists()


def assert_pong(result: tuple[int, str, str]) -> None:
    code, out, err = result
    assert code == 0, err
    assert '"pong": true' in out


async def test_a_worker_and_ten_triggers_started_at_once_share_one_pair_of_servers(home: Path) -> None:
    """Whoever takes the start lock first starts Redis and PostgreSQL; the ten others wait for it
    and attach. Every trigger's job runs on the one worker, one server of each kind ever started,
    and the worker, the last to leave, stops them."""
    env = home_env(home)
    before = starts(home)
    worker = WorkerProcess(subprocess_env(env))
    triggers = [run_command(env, "app.trigger", *PING, "--wait", "--timeout", "90", timeout_s=120) for _ in range(10)]
    await worker.start()
    try:
        for result in await asyncio.gather(*triggers):
            assert_pong(result)
        running = processes_of(home)
        assert (len(running.redis), len(running.postgres), len(running.guards)) == (1, 1, 1)
        assert starts(home) == (before[0] + 1, before[1] + 1)
    finally:
        assert await worker.stop() == 0
    assert processes_of(home).redis == processes_of(home).postgres == []  # stopped before it exited
    await assert_all_gone(home)


async def test_a_second_worker_keeps_the_servers_when_the_first_stops(home: Path) -> None:
    """The worker that started the servers stops while another uses them: they stay (the same
    processes), the other worker runs the next job, and stops them when it goes."""
    before = starts(home)
    first = await start_worker(home_env(home))
    second = await start_worker(home_env(home))
    try:
        running = processes_of(home)
        assert await first.stop() == 0
        assert processes_of(home) == running
        code, out, err = await run_command(home_env(home), "app.trigger", *PING, "--wait", "--timeout", "30")
        assert_pong((code, out, err))
        assert "no worker" not in err
    finally:
        await first.stop()
        assert await second.stop() == 0
    assert starts(home) == (before[0] + 1, before[1] + 1)
    await assert_all_gone(home)


async def test_an_owner_killed_while_starting_is_adopted_and_killed_users_are_stopped_after(home: Path) -> None:
    """kill -9 of the worker between starting Redis and PostgreSQL: the next worker adopts that
    Redis (no second server on the socket or AOF) and finishes the start-up. When it is killed
    -9 too, nobody is left to stop the servers but the guard, which does."""
    before = starts(home)
    owner = WorkerProcess(subprocess_env(home_env(home)))
    await owner.start()
    await owner.wait_for_event("embedded_redis_started", timeout_s=60)
    owner.signal(signal.SIGKILL)
    await owner.wait()
    survivor = await start_worker(home_env(home))
    try:
        assert_pong(await run_command(home_env(home), "app.trigger", *PING, "--wait", "--timeout", "30"))
        assert starts(home) == (before[0] + 1, before[1] + 1)
        running = processes_of(home)
        assert (len(running.redis), len(running.postgres), len(running.guards)) == (1, 1, 1)
    finally:
        survivor.signal(signal.SIGKILL)
        await survivor.wait()
    await all_exited(running.all)
    await assert_all_gone(home)


async def test_a_job_triggered_with_no_worker_waits_in_the_home_for_the_worker(home: Path) -> None:
    """`migrate --status` finding nothing running says so in one line and starts nothing. The
    trigger starts the servers on the worker's data, says in one line that no worker runs, and
    stops them as it leaves; the worker started later finds the job and runs it."""
    code, _, err = await run_command(home_env(home), "app.cli", "migrate", "--status")
    assert code == 2 and err.strip().count("\n") == 0
    assert "no embedded default runs under" in err
    assert processes_of(home).all == []
    code, out, err = await run_command(home_env(home), "app.trigger", *PING)
    assert code == 0, err
    assert "no worker runs on the embedded default" in err
    job_id = out.strip()
    assert processes_of(home).redis == processes_of(home).postgres == []
    worker = await start_worker(home_env(home))
    try:
        await worker.wait_for_event("job_completed", job_id=job_id)
    finally:
        assert await worker.stop() == 0
    await assert_all_gone(home)


async def test_a_postgresql_that_cannot_start_is_named_and_leaves_no_redis_behind(home: Path) -> None:
    """A configuration PostgreSQL refuses: the command exits 2 with a line naming the server's
    log (not a traceback), and the Redis started with it is stopped again (nobody else uses it)."""
    with (home / "pg" / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'not a size'\n")
    code, _, err = await run_command(home_env(home), "app.cli", "queues")
    assert code == 2
    assert f"workhorse: PostgreSQL did not start; see {home / 'pg' / 'log'}" in err.splitlines()
    await all_exited(guard_pids(home))
    assert processes_of(home).all == []
    assert starts(home)[0] == 2  # the template's Redis and this one, stopped


async def test_a_live_servers_socket_is_never_taken_over_and_a_dead_ones_is(tmp_path: Path) -> None:
    """A second server refuses to start on a socket a live one listens on (the first keeps
    answering); once that one is killed -9, its socket file is a leftover and a new server
    starts on it."""
    first, second = RedisServer(tmp_path / "redis", persist=False), RedisServer(tmp_path / "redis", persist=False)
    first.start()
    try:
        with pytest.raises(EmbeddedUnavailable, match="already runs"):
            second.start()
        assert first.answers()
        [pid] = processes_of(tmp_path).redis
        first.processes()[0].kill()
        await exited(pid)
        assert (tmp_path / "redis" / "redis.sock").exists() and not first.answers()
        second.start()
        assert second.answers()
    finally:
        first.stop()
        second.stop()
