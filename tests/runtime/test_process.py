"""The worker as an operator runs it: `python -m app` as a subprocess, its sidecar, signals,
manual triggers and start-up errors."""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from app.jobs.resources import Resources
from app.queue import keys
from app.runtime.embedded import RedisServer
from tests.support.http import get, wait_for_status
from tests.support.jobs import RUNS_KEY
from tests.support.records import arq_record
from tests.support.worker import WorkerProcess, run_command, start_worker, subprocess_env, wait_for_runs

EnvFactory = Callable[..., dict[str, str]]


async def run_trigger(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_command(env, "app.trigger", *args)


async def test_worker_is_ready_within_seconds_and_reports_health(make_env: EnvFactory) -> None:
    """Started as a subprocess, the worker is ready in seconds; its endpoints answer without secrets."""
    env = make_env(smtp_password="s3cret-smtp", openai_api_key="sk-s3cret")
    port = int(env["HEALTH_PORT"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    worker = await start_worker(env)
    try:
        assert await wait_for_status(port, "/health/ready", 200, timeout_s=10) == {"status": "ready"}
        assert loop.time() - started < 15
        assert await get(port, "/health/live") == (200, {"status": "ok"})
        code, detail = await get(port, "/health/detailed")
        assert code == 200
        assert set(detail["queues"]) == {
            "document-processing", "document-embedding", "intake-routing", "calendar-sync",
            "scheduling-reminders", "sla-monitor", "scheduling-agent"}
        assert detail["queues"]["document-processing"]["concurrency"] == 3
        assert detail["queues"]["intake-routing"]["concurrency"] == 5
        assert detail["dependencies"]["redis"]["status"] == "up"
        assert detail["dependencies"]["postgres"]["status"] == "up"
        assert {c["name"] for c in detail["cron"]} == {"sla-scan", "reminder-scan", "calendar-sync",
                                                       "calendar-full-sync"}
        assert all(c["nextRun"] for c in detail["cron"])
        text = json.dumps(detail)
        assert "s3cret" not in text
        code, metrics = await get(port, "/metrics")
        for name in ("workhorse_jobs_processed_total", "workhorse_jobs_failed_total",
                     "workhorse_job_duration_seconds_bucket", "workhorse_queue_depth"):
            assert name in metrics
    finally:
        assert await worker.stop() == 0


async def test_trigger_runs_a_job_and_prints_its_result(make_env: EnvFactory) -> None:
    """`python -m app.trigger ping --queue Q --wait` prints the job id, then the job's result."""
    env = make_env()
    worker = await start_worker(env)
    try:
        code, out, err = await run_trigger(env, "ping", "--queue", "calendar-sync", "--json", '{"note":"x"}', "--wait")
    finally:
        await worker.stop()
    assert code == 0, err
    job_id, _, rest = out.partition("\n")
    result = json.loads(rest)
    assert result["jobId"] == job_id.strip()
    assert result["success"] is True
    assert result["result"]["pong"] is True and result["result"]["queue"] == "calendar-sync"


async def test_trigger_refuses_a_bad_payload_naming_the_fields(make_env: EnvFactory) -> None:
    """A payload that does not fit is refused before anything is enqueued, with each bad field
    named; an unknown extra field is not a reason to refuse (the web app may be newer)."""
    env = make_env()
    code, out, err = await run_trigger(env, "process_document", "--json", '{"documentId": 5, "bogus": 1}')
    assert code == 2 and out == ""
    assert "documentId" in err and "orgId: Field required" in err and "bogus" not in err
    assert "Traceback" not in err
    code, _, err = await run_trigger(env, "no_such_job")
    assert code == 2 and "unknown job 'no_such_job'" in err
    code, out, _ = await run_trigger(env, "--help")
    assert code == 0 and "process_document" in out and "documentId: string (required)" in out


async def test_sigterm_waits_for_a_running_job(make_env: EnvFactory, res: Resources) -> None:
    """On SIGTERM the worker stops taking jobs but lets the running one finish, then exits 0."""
    worker = await start_worker(make_env())
    enqueued = await res.enqueuer.enqueue("probe", {"tag": "slow", "sleepMs": 1500}, queue="intake-routing")
    assert enqueued is not None
    await wait_for_runs(res, "slow", "start", 1)
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0
    assert len(await wait_for_runs(res, "slow", "done", 1, timeout_s=1)) == 1
    info = await res.enqueuer.job(enqueued.job_id, "intake-routing").outcome()
    assert info is not None and info.success


async def test_sigterm_past_the_timeout_leaves_the_job_to_run_again(make_env: EnvFactory, res: Resources) -> None:
    """A job still running at the shutdown timeout is cancelled and runs again on the next start,
    without using up an attempt."""
    env = make_env(shutdown_timeout_ms=300)
    worker = await start_worker(env)
    enqueued = await res.enqueuer.enqueue("probe", {"tag": "long", "sleepMs": 4000}, queue="intake-routing")
    assert enqueued is not None
    await wait_for_runs(res, "long", "start", 1)
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0
    await worker.wait_for_event("worker_stopped", requeued=1, timeout_s=1)
    assert await res.redis.zscore("intake-routing", enqueued.job_id) is not None
    assert await res.redis.lrange(RUNS_KEY, 0, -1) and not await wait_for_runs_now(res, "long", "done")

    second = await start_worker(make_env())
    try:
        done = await wait_for_runs(res, "long", "done", 1, timeout_s=30)
    finally:
        await second.stop()
    starts = await wait_for_runs(res, "long", "start", 2, timeout_s=1)
    assert [s["attempt"] for s in starts] == [1, 1]
    assert done[0]["attempt"] == 1


async def wait_for_runs_now(res: Resources, tag: str, event: str) -> list[dict[str, object]]:
    runs = [json.loads(r) for r in await res.redis.lrange(RUNS_KEY, 0, -1)]
    return [r for r in runs if r["tag"] == tag and r["event"] == event]


class _Exploit:
    """Unpickling this would create the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


async def test_a_pickled_payload_is_refused_not_executed(make_env: EnvFactory, res: Resources,
                                                         tmp_path: Path) -> None:
    """A job written to Redis as a pickle is never unpickled: it goes to the dead-letter queue."""
    marker = tmp_path / "pwned"
    data = arq_record("ping", _Exploit(marker), serializer=pickle.dumps)
    await res.redis.psetex(keys.JOB_PREFIX + "evil", 60_000, data)
    await res.redis.zadd("sla-monitor", {"evil": 1})
    worker = await start_worker(make_env())
    try:
        event = await worker.wait_for_event("job_dead_lettered", job_id="evil", timeout_s=20)
    finally:
        await worker.stop()
    assert not marker.exists()
    assert event["reason"] == "failed_before_start"
    letter = (await res.dlq.list(queue="sla-monitor"))[0]
    assert letter.job_id == "evil" and "pickle" in letter.error_message
    assert letter.raw_payload is not None


async def test_jobs_are_stored_as_json(res: Resources) -> None:
    """What sits in Redis is JSON the web app could have written, with camelCase fields."""
    enqueued = await res.enqueuer.enqueue("sla_scan", {"org_id": "org-1"}, defer_s=60)
    assert enqueued is not None
    stored = json.loads(await res.redis.get(keys.JOB_PREFIX + enqueued.job_id) or b"")
    assert stored["f"] == "sla_scan" and stored["a"] == [{"orgId": "org-1"}]


async def test_a_bad_setting_fails_start_up_with_its_name(make_env: EnvFactory) -> None:
    """A bad value stops the worker at once with one line naming the variable."""
    for name, value in (("HEALTH_PORT", "not-a-port"), ("DOCUMENT_PROCESSING_CONCURRENCY", "0"),
                        ("WORKHORSE_QUEUES", "no-such-queue")):
        worker = WorkerProcess(subprocess_env(make_env(**{name: value})))
        await worker.start()
        assert await worker.wait(30) == 2
        assert len(worker.raw) == 1 and name in worker.raw[0], worker.raw


async def test_a_taken_health_port_fails_start_up_with_its_name(make_env: EnvFactory) -> None:
    """Another program on HEALTH_PORT: one clear line naming the variable, exit 2, no traceback."""
    env = make_env()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["HEALTH_PORT"])))
        taken.listen()
        worker = WorkerProcess(subprocess_env(env))
        await worker.start()
        assert await worker.wait(60) == 2
    errors = [line for line in worker.raw if not line.startswith("{")]
    assert len(errors) == 1 and "HEALTH_PORT" in errors[0] and "Traceback" not in "".join(worker.raw)


async def test_queues_option_serves_a_subset(make_env: EnvFactory) -> None:
    """`--queues` (or WORKHORSE_QUEUES) makes the process serve only those queues."""
    env = make_env()
    worker = await start_worker(env, "--queues", "document-processing,document-embedding")
    try:
        _, detail = await get(int(env["HEALTH_PORT"]), "/health/detailed")
    finally:
        await worker.stop()
    assert set(detail["queues"]) == {"document-processing", "document-embedding"}
    assert detail["cron"] == []


async def test_ready_turns_503_while_redis_is_down_and_back(make_env: EnvFactory, tmp_path: Path) -> None:
    """Redis stopping makes /health/ready 503 (the process keeps running); when it returns,
    ready is 200 again and jobs run."""
    redis = RedisServer(tmp_path / "redis", persist=True)
    redis.start()
    env = make_env(redis_url=redis.url)
    port = int(env["HEALTH_PORT"])
    worker = await start_worker(env)
    try:
        await wait_for_status(port, "/health/ready", 200)
        redis.stop()
        body = await wait_for_status(port, "/health/ready", 503)
        assert any("redis" in r for r in body["reasons"])
        assert worker.proc is not None and worker.proc.returncode is None
        redis.start()
        await wait_for_status(port, "/health/ready", 200)
        code, _, err = await run_trigger(env, "ping", "--queue", "sla-monitor", "--wait", "--timeout", "20")
        assert code == 0, err
    finally:
        await worker.stop()
        redis.stop()


async def test_systemd_hears_ready_watchdog_and_stopping(make_env: EnvFactory, tmp_path: Path) -> None:
    """With NOTIFY_SOCKET set the worker sends READY=1, WATCHDOG=1 pings and STOPPING=1."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    worker = await start_worker(make_env(notify_socket=str(path), watchdog_usec=200_000))
    messages: list[str] = []
    try:
        async with asyncio.timeout(10):
            while "WATCHDOG=1" not in messages:
                messages.append((await loop.sock_recv(sock, 256)).decode())
        worker.signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            while "STOPPING=1" not in messages:
                messages.append((await loop.sock_recv(sock, 256)).decode())
    finally:
        await worker.stop()
        sock.close()
    assert messages[0] == "READY=1"
