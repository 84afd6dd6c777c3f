"""The commands an operator runs, fed what goes wrong in practice: bad or unreachable URLs,
unknown queues, undecodable keys, deep, huge, malformed and NUL-bearing input. Each failure is
one line naming what to fix, exit 2 (set-up) or 1 (refused), never a traceback or a secret."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.config import PROJECT_ROOT, Settings
from app.jobs.resources import Resources
from app.queue import control, keys
from app.queue.payload import MAX_DEPTH, MAX_PAYLOAD_BYTES
from tests.support.tcp_redis import TcpRedis
from tests.support.worker import WorkerProcess, in_process_worker, one_error_line, run_command, subprocess_env

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


async def test_ping_on_an_unknown_queue_is_one_line_and_exit_2(make_env: EnvFactory) -> None:
    """`python -m app.trigger ping --queue nope` names the queue and the known ones."""
    code, _, err = await run_command(make_env(), "app.trigger", "ping", "--queue", "nope")
    line = one_error_line(err)
    assert code == 2 and "unknown queue 'nope'" in line and "sla-monitor" in line


@pytest.mark.parametrize(("payload", "says"), [
    ("[" * 300 + "]" * 300, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a":' * 5000 + "1" + "}" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"note": "' + "x" * 120_000 + '"}', "note"),
    ('{"note": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"sleepMs": "\\u0000"}', "sleepMs"),
    ('{"note": "\\ud800"}', "note: not valid Unicode"),
])
async def test_deep_huge_malformed_and_nul_payloads_are_refused_in_one_line(
        make_env: EnvFactory, payload: str, says: str) -> None:
    """Over-deep (300, 5000 levels, unclosed), long, malformed, non-object and NUL or lone
    surrogate bearing --json: one line naming the problem, exit 2, nothing enqueued."""
    code, out, err = await run_command(make_env(), "app.trigger", "ping", "--queue", "sla-monitor", "--json", payload)
    line = one_error_line(err)
    assert code == 2 and says in line, line
    assert out == ""


def test_payloads_over_the_size_limit_are_refused_naming_it() -> None:
    """A command line holds at most 128 KiB per argument (Linux), below MAX_PAYLOAD_BYTES, so the
    size limit is checked where payloads arrive whole: loads_limited and check_limits."""
    from app.errors import InvalidPayload
    from app.queue.payload import check_limits, loads_limited

    big = json.dumps({"blob": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(InvalidPayload, match=f"more than {MAX_PAYLOAD_BYTES} bytes"):
        loads_limited("ping", big)
    with pytest.raises(InvalidPayload, match=f"at most {MAX_PAYLOAD_BYTES} are accepted"):
        check_limits("ping", {"items": ["y" * 1000] * 1100})


async def test_jobs_show_marks_undecodable_result_and_progress_instead_of_crashing(
        make_env: EnvFactory, res: Resources) -> None:
    """A result or progress key holding bytes that are not JSON prints as JSON with the bytes
    marked undecodable."""
    await res.redis.set(keys.RESULT_PREFIX + "garbled", b"\x80\x04\x95pickle\xff\x00")
    await res.redis.set(keys.progress_key("garbled"), b"\xff\xfe{not json")
    code, out, err = await run_command(make_env(), "app.cli", "jobs", "show", "garbled")
    assert code == 0 and "Traceback" not in err
    shown = json.loads(out)
    assert shown["jobId"] == "garbled" and shown["status"] == "complete" and shown["success"] is False
    assert "undecodable" in shown["result"] and "undecodable" in shown["progress"]


async def test_jobs_show_names_the_queue_a_job_ran_on(make_env: EnvFactory, settings: Settings,
                                                      res: Resources) -> None:
    """A ping run on calendar-sync shows queue calendar-sync without --queue, queued or done."""
    queued = await res.enqueuer.enqueue("ping", {}, queue="calendar-sync")
    assert queued is not None
    env = make_env()
    code, out, _ = await run_command(env, "app.cli", "jobs", "show", queued.job_id)
    assert code == 0 and json.loads(out)["queue"] == "calendar-sync" and json.loads(out)["status"] == "queued"
    async with in_process_worker(settings, ["calendar-sync"]):
        await res.enqueuer.job(queued.job_id, "calendar-sync").wait(timeout_s=20, poll_delay=0.02)
    code, out, _ = await run_command(env, "app.cli", "jobs", "show", queued.job_id)
    shown = json.loads(out)
    assert code == 0 and shown["queue"] == "calendar-sync" and shown["success"] is True


async def test_pause_and_resume_all_and_drain_several(make_env: EnvFactory, res: Resources) -> None:
    """`queues pause --all` pauses every queue, `resume --all` undoes it; `drain A B` waits for
    both; naming no queue (or a queue and --all) is one line, exit 2."""
    env = make_env()
    code, _, err = await run_command(env, "app.cli", "queues", "pause", "--all")
    assert code == 0, err
    paused = await control.paused(res.redis)
    assert {"sla-monitor", "calendar-sync", "intake-routing", "document-processing"} <= paused
    code, _, err = await run_command(env, "app.cli", "queues", "resume", "--all")
    assert code == 0 and await control.paused(res.redis) == set()
    for argv in (("queues", "pause"), ("queues", "drain", "sla-monitor", "--all"), ("queues", "resume", "nope")):
        code, _, err = await run_command(env, "app.cli", *argv)
        assert code == 2 and one_error_line(err), argv
    await res.enqueuer.enqueue("ping", {}, queue="calendar-sync")
    code, _, err = await run_command(env, "app.cli", "queues", "drain", "sla-monitor", "calendar-sync",
                                     "--timeout", "0.5")
    assert code == 1 and "did not drain" in err and "waiting=1" in err


async def test_queues_json_has_a_total(make_env: EnvFactory, res: Resources) -> None:
    """`queues --json` adds "total": every count summed over the queues; the table a total row."""
    for q in ("sla-monitor", "sla-monitor", "calendar-sync"):
        await res.enqueuer.enqueue("ping", {}, queue=q)
    await res.enqueuer.enqueue("ping", {}, queue="intake-routing", defer_s=600)
    env = make_env()
    code, out, _ = await run_command(env, "app.cli", "queues", "--json")
    shown = json.loads(out)
    total = shown.pop("total")
    assert code == 0 and total["waiting"] == 3 and total["delayed"] == 1
    assert total["concurrency"] == sum(r["concurrency"] for r in shown.values())
    code, out, _ = await run_command(env, "app.cli", "queues")
    assert out.splitlines()[-1].split()[:4] == ["total", "3", "0", "1"]


async def test_dlq_retry_all_retries_each_letter_on_its_own(make_env: EnvFactory, res: Resources) -> None:
    """Nine dead letters, the oldest no longer valid today: eight are enqueued again, the
    refused one is reported with its reason and stays DEAD, and the exit code is 1."""
    await res.dlq.put(job_id="bad", job_name="ping", queue="sla-monitor", payload={"sleepMs": -5},
                      attempts=1, error_class="bug", error_message="boom")
    for n in range(8):
        await res.dlq.put(job_id=f"good{n}", job_name="ping", queue="sla-monitor", payload={"note": f"n{n}"},
                          attempts=3, error_class="TransientError", error_message="down")
    code, out, err = await run_command(make_env(), "app.cli", "dlq", "retry", "--all")
    assert code == 1 and "Traceback" not in err
    assert "retried 8 of 9; refused 1" in out
    bad_line = next(line for line in out.splitlines() if "refused (stays DEAD)" in line)
    assert "sleepMs" in bad_line
    [left] = await res.dlq.list()
    assert left.job_id == "bad" and left.status == "DEAD"
    assert len(await res.dlq.list(status="RETRIED", limit=20)) == 8
    assert await res.redis.zcard("sla-monitor") == 8


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


@pytest.mark.parametrize("argv", [
    ("dlq", "retry", "99999999999999999999"), ("dlq", "show", "-5"), ("dlq", "show", "1e3"),
    ("queues", "pause", "q" * 100_000), ("queues", "drain", "sla-monitor", "nope\u202e"),
    ("queues", "resume"),
])
async def test_out_of_range_ids_and_unknown_or_huge_queue_names_are_one_short_line(
        make_env: EnvFactory, argv: tuple[str, ...]) -> None:
    """A dead letter id beyond bigint or below 1, and queue names that are unknown, enormous or
    missing: a short error line (argparse's own after its usage line), exit 2, no traceback."""
    code, _, err = await run_command(make_env(), "app.cli", *argv)
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert code == 2 and len(err) < 1000 and ("error" in line or "unknown queue" in line or "--all" in line), err


async def test_a_payload_over_the_size_limit_on_standard_input_is_one_line(make_env: EnvFactory) -> None:
    """`--json -` reads the payload from standard input (a command line cannot carry 1 MB): more
    than MAX_PAYLOAD_BYTES is refused naming the limit, exit 2, nothing enqueued."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.trigger", "ping", "--queue", "sla-monitor", "--json", "-",
        env=subprocess_env(make_env()), cwd=PROJECT_ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    body = b'{"note": "' + b"x" * 1_100_000 + b'"}'
    async with asyncio.timeout(60):
        out, err = await proc.communicate(body)
    assert proc.returncode == 2 and out == b""
    assert "more than 1000000 bytes" in one_error_line(err.decode())
