"""arq is the engine's wire protocol: the real arq 0.28 client (in a virtual environment of its
own) enqueues jobs the running engine runs, and reads their status, info and results truthfully —
with `json.loads`, and with the README's `job_deserializer` — aborts them, and checks health."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.config import PROJECT_ROOT, Settings
from app.jobs.resources import Resources
from app.queue import codec, keys
from app.queue.clock import now_ms
from app.queue.replies import octets
from app.runtime.process import Process
from bench.redis_server import private_redis
from tests.support.arq_client import ArqClient, arq_client
from tests.support.http import get
from tests.support.system import require_binary
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
_README_BLOCK = re.compile(r"<!-- arq-job-deserializer[^\n]*-->\n```python\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def readme_deserializer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's `job_deserializer`, as a file the arq client loads."""
    found = _README_BLOCK.search((PROJECT_ROOT / "README.md").read_text())
    assert found, "README.md lost its arq job_deserializer block"
    path = tmp_path_factory.mktemp("arq") / "deserializer.py"
    path.write_text(found.group(1))
    return path


@asynccontextmanager
async def engine_and_client(settings: Settings, deserializer: Path) -> AsyncIterator[tuple[Process, ArqClient]]:
    assert settings.redis.url is not None
    async with in_process_worker(settings, [QUEUE]) as process, arq_client(settings.redis.url, deserializer) as arq:
        yield process, arq


def _wakeups(process: Process, source: str) -> float:
    found = process.res.metrics.registry.get_sample_value("workhorse_wakeups_total",
                                                          {"queue": QUEUE, "source": source})
    return found or 0.0


async def test_a_stock_client_enqueues_and_reads_a_completed_job(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """enqueue_job(name, payload, _queue_name=...) runs the job; status() says complete, info()
    holds arq's JobResult (function, args, success, result, queue) and result() returns the
    job's return value, with either deserializer."""
    async with engine_and_client(make_settings(), readme_deserializer) as (_, arq):
        sent = await arq.call("enqueue", function="probe", args=[{"tag": "ok"}], queue=QUEUE)
        job = {"job_id": sent["job_id"], "queue": QUEUE}
        for deserializer in ("plain", "readme"):
            assert await arq.call("result", **job, deserializer=deserializer) == {"result": {"tag": "ok", "runs": 1}}
        assert await arq.call("status", **job) == {"status": "complete"}
        info = (await arq.call("info", **job))["info"]
    assert info["function"] == "probe" and info["args"] == [{"tag": "ok"}] and info["job_try"] == 1
    assert info["success"] is True and info["result"] == {"tag": "ok", "runs": 1}
    assert info["queue"] == QUEUE and info["job_id"] == sent["job_id"]
    assert info["enqueue_ms"] <= info["start_ms"] <= info["finish_ms"]


async def test_a_job_id_is_refused_while_the_job_waits_or_its_result_is_kept(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """A second enqueue_job with the same _job_id returns None: while the first waits (deferred),
    and after it finished while its result is kept."""
    async with engine_and_client(make_settings(), readme_deserializer) as (process, arq):
        first = await arq.call("enqueue", function="probe", args=[{"tag": "once"}], queue=QUEUE, job_id="same",
                               defer_by_s=0.5)
        assert first["job_id"] == "same"
        again = await arq.call("enqueue", function="probe", args=[{"tag": "twice"}], queue=QUEUE, job_id="same")
        assert again["job_id"] is None
        await arq.call("result", job_id="same", queue=QUEUE)
        late = await arq.call("enqueue", function="probe", args=[{"tag": "late"}], queue=QUEUE, job_id="same")
        assert late["job_id"] is None
        assert [r["tag"] for r in await wait_for_runs(process.res, "once", "start", 1)] == ["once"]


@pytest.mark.parametrize("how", ["defer_by_s", "defer_until_ms"])
async def test_deferred_jobs_start_no_sooner_than_asked(
        make_settings: Callable[..., Settings], readme_deserializer: Path, how: str) -> None:
    """_defer_by and _defer_until: the job is `deferred` (info's score its run-at time) and starts
    at that time, not before."""
    async with engine_and_client(make_settings(), readme_deserializer) as (process, arq):
        due_ms = now_ms() + 800
        option: dict[str, Any] = {"defer_by_s": 0.8} if how == "defer_by_s" else {"defer_until_ms": due_ms}
        sent = await arq.call("enqueue", function="probe", args=[{"tag": how}], queue=QUEUE, **option)
        job = {"job_id": sent["job_id"], "queue": QUEUE}
        assert await arq.call("status", **job) == {"status": "deferred"}
        score = (await arq.call("info", **job))["info"]["score"]
        assert abs(score - due_ms) < 200
        [start] = await wait_for_runs(process.res, how, "start", 1, timeout_s=10)
    assert start["t"] * 1000 >= score - 5  # the clocks are the same machine's


async def test_a_failed_job_raises_its_error_class_and_message(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """A dead-lettered job: status() complete, info().success False, and result() raises — with
    json.loads arq's SerializationError whose text names the error class and message, with the
    README's deserializer a JobFailed "NotFound: message" (NotFound: a PermanentError)."""
    async with engine_and_client(make_settings(), readme_deserializer) as (_, arq):
        bad = {"tag": "bad", "failTimes": 9, "error": "permanent"}
        sent = await arq.call("enqueue", function="probe", args=[bad], queue=QUEUE)
        job = {"job_id": sent["job_id"], "queue": QUEUE}
        plain = await arq.call("result", **job, deserializer="plain")
        readme = await arq.call("result", **job, deserializer="readme")
        info = (await arq.call("info", **job))["info"]
        assert await arq.call("status", **job) == {"status": "complete"}
    assert plain["raised"] == "SerializationError"
    assert "'error': 'NotFound'" in plain["text"] and "bad: row does not exist" in plain["text"]
    assert readme["raised"] == "JobFailed" and readme["text"].startswith("NotFound: ")
    assert info["success"] is False and info["result"]["error"] == "NotFound"


async def test_abort_stops_a_waiting_job_and_a_running_one(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """Job.abort(): a deferred job never runs and a running one is cancelled; with the README's
    deserializer abort() returns True, with json.loads it raises SerializationError naming
    CancelledError. Neither aborted job is dead-lettered or retried."""
    async with engine_and_client(make_settings(), readme_deserializer) as (process, arq):
        waiting = await arq.call("enqueue", function="probe", args=[{"tag": "waiting"}], queue=QUEUE, defer_by_s=60)
        running = await arq.call("enqueue", function="probe", args=[{"tag": "running", "sleepMs": 30_000}],
                                 queue=QUEUE)
        plain = await arq.call("enqueue", function="probe", args=[{"tag": "plain"}], queue=QUEUE, defer_by_s=60)
        await wait_for_runs(process.res, "running", "start", 1)
        for job in (waiting, running):
            aborted = await arq.call("abort", job_id=job["job_id"], queue=QUEUE, deserializer="readme")
            assert aborted == {"aborted": True}
        refused = await arq.call("abort", job_id=plain["job_id"], queue=QUEUE, deserializer="plain")
        assert refused["raised"] == "SerializationError" and "CancelledError" in refused["text"]
        runs = [json.loads(r) for r in await process.res.redis.lrange("test:runs", 0, -1)]
        assert [(r["tag"], r["event"]) for r in runs] == [("running", "start")]
        assert await process.res.dlq.list() == []
        assert await process.res.redis.zcard(keys.ABORT_SET) == 0, "handled aborts stay in arq's abort set"


async def test_an_abort_older_than_the_job_does_not_touch_it(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """An abort asked for an id before a job of that id was enqueued (arq #485: arq's own workers
    would kill every later job of that id) is ignored: the job runs and completes."""
    async with engine_and_client(make_settings(), readme_deserializer) as (process, arq):
        await process.res.redis.zadd(keys.ABORT_SET, {"reused": now_ms() - 1000})
        await arq.call("enqueue", function="probe", args=[{"tag": "reused"}], queue=QUEUE, job_id="reused")
        assert await arq.call("result", job_id="reused", queue=QUEUE) == {"result": {"tag": "reused", "runs": 1}}


async def test_records_are_arqs_both_ways(
        make_settings: Callable[..., Settings], readme_deserializer: Path, res: Resources) -> None:
    """Our job record is byte-for-byte what arq's serialize_job writes (as JSON), arq's
    deserialize_job reads it, and arq's deserialize_result reads the result records we write."""
    payload = {"tag": "récord", "nested": {"list": [1, 2.5, None, True], "nul": "a\u0001b"}}
    async with arq_client(res.redis_url, readme_deserializer) as arq:
        theirs = (await arq.call("serialize_job", function="probe", args=[payload], kwargs={},
                                 enqueue_ms=1_700_000_000_000))["record"]
        ours = codec.dump_job("probe", codec.dumps(payload), {}, 1_700_000_000_000)
        assert json.loads(theirs) == json.loads(ours)
        read = (await arq.call("read_job", record=ours.decode()))["info"]
        assert (read["function"], read["args"], read["kwargs"], read["job_try"], read["enqueue_ms"]) == (
            "probe", [payload], {}, None, 1_700_000_000_000)
        async with in_process_worker(make_settings(), [QUEUE]):
            sent = await arq.call("enqueue", function="probe", args=[{"tag": "r"}], queue=QUEUE)
            await arq.call("result", job_id=sent["job_id"], queue=QUEUE)
        raw = octets(await res.redis.get(keys.RESULT_PREFIX + sent["job_id"]) or b"")
        result = (await arq.call("read_result", record=raw.decode()))["info"]
    assert result["success"] is True and result["result"] == {"tag": "r", "runs": 1} and result["queue"] == QUEUE


async def test_arq_check_reads_each_queues_health_record(
        make_settings: Callable[..., Settings], readme_deserializer: Path, res: Resources) -> None:
    """`arq --check` (its async_check_health) passes while the worker serves the queue and fails
    once it has stopped."""
    async with arq_client(res.redis_url, readme_deserializer) as arq:
        async with in_process_worker(make_settings(health_check_interval_s=1), [QUEUE]):
            assert await arq.call("check_health", queue=QUEUE) == {"exit_code": 0}
        assert await arq.call("check_health", queue=QUEUE) == {"exit_code": 1}


async def test_a_stock_clients_job_is_woken_by_keyspace_notification(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """With keyspace notifications available (the tests' Redis allows CONFIG SET), a stock
    client's ZADD wakes the worker: the job runs long before the 5 s fallback sweep, and the
    wake-up is counted as `keyspace`, none as `sweep`."""
    settings = make_settings(poll_fallback_ms=5000)
    async with engine_and_client(settings, readme_deserializer) as (process, arq):
        assert process.engine.snapshot().keyspace.on
        started = time.monotonic()
        sent = await arq.call("enqueue", function="probe", args=[{"tag": "woken"}], queue=QUEUE)
        await arq.call("result", job_id=sent["job_id"], queue=QUEUE, timeout_s=4)
        assert time.monotonic() - started < 4
        assert _wakeups(process, "keyspace") >= 1 and _wakeups(process, "sweep") == 0


async def test_where_config_is_refused_the_sweep_finds_stock_clients_jobs(
        make_settings: Callable[..., Settings], readme_deserializer: Path) -> None:
    """On a Redis whose CONFIG command is disabled (as managed Redis often has it), the engine
    says so once and in /health/detailed, and a stock client's job is still found, by the sweep."""
    require_binary("redis-server")
    async with private_redis("--rename-command", "CONFIG", "") as url:
        settings = make_settings(redis_url=url, poll_fallback_ms=200)
        async with engine_and_client(settings, readme_deserializer) as (process, arq):
            keyspace = process.engine.snapshot().keyspace
            assert not keyspace.on and "CONFIG GET refused" in keyspace.detail
            code, detail = await get(settings.health.port, "/health/detailed")
            assert code == 200 and detail["config"]["arqClients"]["wakeMode"] == "sweep"
            sent = await arq.call("enqueue", function="probe", args=[{"tag": "swept"}], queue=QUEUE)
            assert await arq.call("result", job_id=sent["job_id"], queue=QUEUE) == {
                "result": {"tag": "swept", "runs": 1}}
            assert _wakeups(process, "sweep") >= 1 and _wakeups(process, "keyspace") == 0
