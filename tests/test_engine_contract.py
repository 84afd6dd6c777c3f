"""The contract with arq: every hook, attribute, key and behaviour of arq that app/queue relies on.

app/queue overrides private hooks of arq's Worker, and reads and writes arq's job records, locks,
retry counters and results itself, so an arq upgrade can break it without a single type error.
Each test pins one thing we rely on, and each assertion message names the arq item and the file
of ours that depends on it: when arq moves, this file says what moved and where to look. Only
arq, our codec and our keys are imported here, so the pins hold while the rest of app/queue is
reshaped.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import arq.constants
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus, serialize_job, serialize_result
from arq.utils import timestamp_ms
from arq.worker import Function, Worker, func

from app.queue import codec, keys
from tests.support.services import ServiceUrls

ROOT = Path(__file__).resolve().parents[1]
WORKER = "app/queue/worker.py"
RUNNING = "app/queue/running.py"
CLAIMS = "app/queue/claims.py"
ENQUEUE = "app/queue/enqueue.py"
KEYS = "app/queue/keys.py"
PROCESS = "app/runtime/process.py"
RESOURCES = "app/runtime/resources.py"
JOBS_CLI = "app/cli/jobs_cmd.py"
EXECUTION = "app/queue/execution.py"

QUEUE = "contract"
MAX_JOBS = 3
DAY_MS = 86_400_000


class ObservedWorker(Worker):
    """arq's Worker, noting each call arq makes to a hook that QueueWorker overrides."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.health_records = 0
        self.polled = asyncio.Event()

    async def _poll_iteration(self) -> None:
        self.polled.set()
        await asyncio.sleep(3600)

    async def record_health(self) -> None:
        self.health_records += 1


def worker_options(pool: ArqRedis, *functions: Function) -> dict[str, Any]:
    """The settings QueueWorker gives arq's Worker, with burst mode and signal handlers off."""
    return dict(functions=list(functions), queue_name=QUEUE, redis_pool=pool, handle_signals=False, burst=False,
                max_jobs=MAX_JOBS, job_timeout=30, keep_result=60, poll_delay=0, health_check_interval=3600,
                job_serializer=codec.dumps, job_deserializer=codec.loads, log_results=False)


def make_worker(pool: ArqRedis, *functions: Function) -> ObservedWorker:
    return ObservedWorker(**worker_options(pool, *functions))


async def put_job(pool: ArqRedis, job_id: str, function: str, *args: Any, score: int | None = None,
                  claimed: bool = True) -> int:
    """Write a job as enqueue.py's Lua does (record + ZADD) and, if `claimed`, lock it as
    worker.py's claim Lua does; returns its score."""
    now = timestamp_ms()
    score = now if score is None else score
    await pool.psetex(keys.JOB_PREFIX + job_id, DAY_MS, serialize_job(function, args, {}, None, now,
                                                                       serializer=codec.dumps))
    await pool.zadd(QUEUE, {job_id: score})
    if claimed:
        await pool.psetex(keys.IN_PROGRESS_PREFIX + job_id, 10_000, b"1")
    return score


async def key_names(pool: ArqRedis) -> set[str]:
    return {k.decode() for k in await pool.keys("*")}


@pytest.fixture
async def pool(clean: ServiceUrls) -> AsyncIterator[ArqRedis]:
    """A pool built the way app/runtime/resources.py builds one: arq's create_pool, our codec."""
    redis = await create_pool(RedisSettings.from_dsn(clean.redis_url), job_serializer=codec.dumps,
                              job_deserializer=codec.loads)
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


HOOKS = [
    # (arq Worker method, its parameters after self, awaited by us, the file of ours that relies on it)
    ("_poll_iteration", (), True, WORKER),
    ("main", (), True, WORKER),
    ("start_jobs", ("job_ids",), True, WORKER),
    ("heart_beat", (), True, WORKER),
    ("record_health", (), True, WORKER),
    ("async_run", (), True, PROCESS),
]


@pytest.mark.parametrize(("name", "params", "awaited", "ours"), HOOKS, ids=[h[0] for h in HOOKS])
def test_worker_methods_we_override_or_call_keep_their_signatures(
        name: str, params: tuple[str, ...], awaited: bool, ours: str) -> None:
    """Each Worker method our code overrides or calls exists with the same parameter names, and is
    a coroutine function exactly when we await it."""
    method = getattr(Worker, name, None)
    assert method is not None, f"arq Worker.{name} is gone; {ours} overrides or calls it"
    found = list(inspect.signature(method).parameters)
    assert found == ["self", *params], f"arq Worker.{name} takes {found}; {ours} expects {['self', *params]}"
    assert inspect.iscoroutinefunction(method) is awaited, (
        f"arq Worker.{name} is {'no longer' if awaited else 'now'} a coroutine function; {ours} "
        f"{'awaits' if awaited else 'calls'} it")


def test_worker_takes_the_settings_queue_worker_passes_and_defaults_what_it_leaves_out() -> None:
    """Worker() accepts every keyword QueueWorker passes; the ones it leaves out default to
    retrying Retry and cancellations, no aborts, no burst and no cron jobs."""
    params = inspect.signature(Worker).parameters
    for name in ("functions", "queue_name", "redis_pool", "handle_signals", "max_jobs", "job_timeout",
                 "keep_result", "poll_delay", "health_check_interval", "job_serializer", "job_deserializer",
                 "log_results"):
        assert name in params, f"arq Worker(...) no longer accepts {name}=; {WORKER} passes it"
    for name, default in (("retry_jobs", True), ("allow_abort_jobs", False), ("burst", False), ("cron_jobs", None)):
        assert name in params and params[name].default is default, (
            f"arq Worker(...) default {name}={default!r} changed; {WORKER} relies on it without passing it")


async def test_constructed_worker_has_the_attributes_queue_worker_reads_and_writes(pool: ArqRedis) -> None:
    """A freshly built Worker has each attribute QueueWorker uses, of the type it assumes; the ones
    QueueWorker assigns are plain instance attributes."""
    worker = Worker(**worker_options(pool, func(greet, name="greet")))
    expected: list[tuple[str, type | tuple[type, ...], str]] = [
        ("tasks", dict, WORKER), ("job_counter", int, WORKER),
        ("max_jobs", int, WORKER), ("queue_read_limit", int, WORKER), ("in_progress_timeout_s", (int, float), WORKER),
        ("allow_pick_jobs", bool, WORKER), ("health_check_key", str, WORKER),
        ("health_check_interval", (int, float), WORKER), ("_last_health_check", (int, float), WORKER),
        ("main_task", type(None), PROCESS), ("pool", ArqRedis, WORKER), ("jobs_complete", int, WORKER),
        ("jobs_failed", int, WORKER), ("jobs_retried", int, WORKER), ("queue_name", str, WORKER),
        ("loop", asyncio.AbstractEventLoop, WORKER),
    ]
    for name, kind, ours in expected:
        assert hasattr(worker, name), f"arq Worker.{name} is gone; {ours} uses it"
        value = getattr(worker, name)
        assert isinstance(value, kind), f"arq Worker.{name} is a {type(value).__name__}, not {kind}; {ours} uses it"
    for name in ("in_progress_timeout_s", "allow_pick_jobs", "job_counter", "_last_health_check"):
        assert name in vars(worker), f"arq Worker.{name} is no longer a plain attribute; {WORKER} assigns it"
    assert (worker.tasks, worker.job_counter, worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (
        {}, 0, 0, 0, 0), f"arq Worker counters do not start empty; {WORKER} counts from them"
    assert worker.max_jobs == MAX_JOBS and worker.queue_read_limit >= MAX_JOBS, f"arq Worker.max_jobs; {WORKER}"
    assert worker.allow_pick_jobs is True, f"arq Worker.allow_pick_jobs starts False; {WORKER}"
    assert worker.pool is pool, f"arq Worker.pool is not the redis_pool given; {WORKER} uses it"
    assert worker.loop is asyncio.get_running_loop(), f"arq Worker.loop is not the running loop; {WORKER}"
    assert worker.health_check_key == QUEUE + arq.constants.health_check_key_suffix == QUEUE + ":health-check", (
        f"arq Worker.health_check_key moved; {WORKER} record_health writes it for `arq --check`")
    slow = Worker(**{**worker_options(pool, func(greet, name="greet", timeout=120)), "job_timeout": 30})
    assert slow.in_progress_timeout_s == 130, (
        f"arq Worker.in_progress_timeout_s is {slow.in_progress_timeout_s}, not the largest timeout + 10 s; "
        f"{WORKER} keeps locks at least that long")


async def test_heart_beat_records_health_through_the_overridable_hook_and_nothing_else(pool: ArqRedis) -> None:
    """Worker.heart_beat (which QueueWorker extends) calls self.record_health (which QueueWorker
    replaces) and, without cron jobs, writes nothing to Redis itself."""
    worker = make_worker(pool, func(greet, name="greet"))
    await worker.heart_beat()
    assert worker.health_records == 1, f"arq Worker.heart_beat no longer calls self.record_health; {WORKER}"
    assert await key_names(pool) == set(), f"arq Worker.heart_beat writes to Redis itself; {WORKER}"


def test_key_prefixes_are_the_strings_our_lua_scripts_spell() -> None:
    """arq's key prefixes, health-key suffix and job expiry are the values our Lua scripts and
    keys.py assume, and keys.py re-exports arq's own objects."""
    for ours, arq_name, value, users in (
        (keys.JOB_PREFIX, "job_key_prefix", "arq:job:", f"{ENQUEUE} Lua, {CLAIMS} Lua, {EXECUTION}"),
        (keys.IN_PROGRESS_PREFIX, "in_progress_key_prefix", "arq:in-progress:", f"{CLAIMS} Lua, heart_beat"),
        (keys.RETRY_PREFIX, "retry_key_prefix", "arq:retry:", f"{CLAIMS} Lua, {EXECUTION} attempt refund"),
        (keys.RESULT_PREFIX, "result_key_prefix", "arq:result:", f"{ENQUEUE} Lua, app/queue/finishing.py Lua"),
    ):
        assert getattr(arq.constants, arq_name, None) == value, (
            f"arq.constants.{arq_name} is no longer {value!r}; {users} spell it via {KEYS}")
        assert ours is getattr(arq.constants, arq_name), f"{KEYS} does not re-export arq.constants.{arq_name}"
    assert arq.constants.health_check_key_suffix == ":health-check", (
        f"arq.constants.health_check_key_suffix changed; {WORKER} record_health writes arq's health key")
    assert arq.constants.expires_extra_ms == DAY_MS, (
        f"arq.constants.expires_extra_ms changed; {ENQUEUE} EXPIRES_EXTRA_MS copies it")


def test_serialize_job_writes_the_record_our_codec_reads() -> None:
    """serialize_job, called positionally as enqueue.py does, writes a JSON object with exactly
    the fields t, f, a, k, et."""
    params = list(inspect.signature(serialize_job).parameters)
    assert params[:5] == ["function_name", "args", "kwargs", "job_try", "enqueue_time_ms"], (
        f"arq.jobs.serialize_job takes {params}; {ENQUEUE} passes its arguments by position")
    record = codec.loads(serialize_job("greet", ({"name": "Ada"},), {}, None, 1234, serializer=codec.dumps))
    assert record == {"t": None, "f": "greet", "a": [{"name": "Ada"}], "k": {}, "et": 1234}, (
        f"arq.jobs.serialize_job writes {record}; {ENQUEUE} and {WORKER} read fields t, f, a, k, et")


async def test_arq_enqueue_writes_only_the_job_record_and_the_queue_entry(pool: ArqRedis) -> None:
    """arq's own enqueue_job writes the record under arq:job:<id> (expiring a day after its time)
    and the id in the queue ZSET scored by run-at ms, and nothing else: what enqueue.py's Lua copies."""
    before = timestamp_ms()
    job = await pool.enqueue_job("greet", {"name": "Ada"}, _job_id="e1", _queue_name=QUEUE)
    assert job is not None
    assert await key_names(pool) == {"arq:job:e1", QUEUE}, f"arq enqueue_job writes other keys; {ENQUEUE} Lua"
    score = await pool.zscore(QUEUE, "e1")
    assert score is not None and before <= score <= timestamp_ms(), f"arq enqueue_job score; {ENQUEUE} Lua"
    assert DAY_MS - 5_000 < await pool.pttl("arq:job:e1") <= DAY_MS, f"arq enqueue_job expiry; {ENQUEUE} Lua"
    record = await pool.get("arq:job:e1")
    assert record is not None and set(codec.loads(record)) == {"t", "f", "a", "k", "et"}, (
        f"arq enqueue_job record fields changed; {ENQUEUE} writes t, f, a, k, et")


def test_func_keeps_name_max_tries_and_timeout() -> None:
    """func(name=, max_tries=, timeout=) returns a Function exposing them."""
    function = func(greet, name="greet_v2", max_tries=4, timeout=12.5)
    assert isinstance(function, Function), f"arq.worker.func no longer returns a Function; {EXECUTION}"
    assert (function.name, function.max_tries, function.timeout_s, function.coroutine) == (
        "greet_v2", 4, 12.5, greet), f"arq Function fields name/max_tries/timeout_s moved; {EXECUTION} sets them"


async def greet(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> str:
    """A job function that answers from its payload."""
    return f"hello {args[0]['name']}"


def test_serialize_result_writes_the_result_record_our_handles_read() -> None:
    """serialize_result, called positionally as running.py does, writes a JSON object with the
    fields JobHandle, `jobs show` and arq's Job read, errors through our codec."""
    params = list(inspect.signature(serialize_result).parameters)
    assert params[:11] == ["function", "args", "kwargs", "job_try", "enqueue_time_ms", "success", "result",
                           "start_ms", "finished_ms", "ref", "queue_name"], (
        f"arq.jobs.serialize_result takes {params}; {RUNNING} passes its arguments by position")
    data = serialize_result("greet", ({"name": "Ada"},), {}, 2, 1000, False, RuntimeError("boom"), 1100, 1200,
                            "r1:greet", QUEUE, job_id="r1", serializer=codec.dumps)
    assert data is not None
    result = codec.loads(data)
    assert {k: result.get(k) for k in ("s", "r", "t", "f", "q", "id", "et", "st", "ft")} == {
        "s": False, "r": {"error": "RuntimeError", "message": "boom"}, "t": 2, "f": "greet", "q": QUEUE, "id": "r1",
        "et": 1000, "st": 1100, "ft": 1200}, f"arq result record changed: {result}; {RUNNING} writes it"


async def test_async_run_sets_main_task_and_runs_the_overridable_main(pool: ArqRedis) -> None:
    """async_run (how the process starts each Worker) sets main_task and runs self.main, which
    QueueWorker replaces (arq's own loops on self._poll_iteration, which QueueWorker replaces too)."""
    worker = make_worker(pool, func(greet, name="greet"))
    runner = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(2):
            await worker.polled.wait()
    finally:
        assert worker.main_task is not None, f"arq Worker.async_run no longer sets main_task; {PROCESS}"
        worker.main_task.cancel()
        await asyncio.wait([runner])


async def test_job_handle_reports_each_status_and_the_result_fields_jobs_show_prints(pool: ArqRedis) -> None:
    """Job(id, redis, _queue_name=, _deserializer=) reads not_found, deferred, queued, in_progress
    and complete from the keys we write, and result_info() has the fields `jobs show` prints."""
    job = Job("h1", pool, _queue_name=QUEUE, _deserializer=codec.loads)
    assert await job.status() is JobStatus.not_found, f"arq Job.status(); {ENQUEUE} Enqueuer.job() returns a Job"
    future = await put_job(pool, "h1", "greet", {"name": "Ada"}, score=timestamp_ms() + 60_000, claimed=False)
    assert await job.status() is JobStatus.deferred, f"arq Job.status() of a future score; {JOBS_CLI}"
    info = await job.info()
    assert info is not None and (info.function, list(info.args), info.score) == ("greet", [{"name": "Ada"}], future), (
        f"arq Job.info() reads {info}; {ENQUEUE} writes the record it reads")
    await pool.zadd(QUEUE, {"h1": timestamp_ms()})
    assert await job.status() is JobStatus.queued, f"arq Job.status() of a due score; {JOBS_CLI}"
    await pool.psetex(keys.IN_PROGRESS_PREFIX + "h1", 10_000, b"1")
    assert await job.status() is JobStatus.in_progress, f"arq Job.status() reads the lock {WORKER} claims"
    # Finished as running.py and finishing.py finish it: result stored, record, lock and entry gone.
    await pool.set(keys.RESULT_PREFIX + "h1", serialize_result(
        "greet", ({"name": "Ada"},), {}, 1, future, True, "hello Ada", future, timestamp_ms(), "h1:greet", QUEUE,
        job_id="h1", serializer=codec.dumps) or b"")
    await pool.delete(keys.JOB_PREFIX + "h1", keys.IN_PROGRESS_PREFIX + "h1")
    await pool.zrem(QUEUE, "h1")
    assert await job.status() is JobStatus.complete, f"arq Job.status() after a run; {JOBS_CLI}"
    done = await job.result_info()
    assert done is not None and (done.success, done.result, done.job_try, done.function) == (
        True, "hello Ada", 1, "greet"), f"arq Job.result_info() fields moved: {done}; {JOBS_CLI} prints them"
    assert isinstance(done.finish_time, datetime), f"arq JobResult.finish_time; {JOBS_CLI} prints it"


def test_job_status_members_our_code_names_exist_with_their_names_as_values() -> None:
    """Every JobStatus member named anywhere in app/ exists, and its value (what `jobs show`
    prints) is its name."""
    used = {(m, str(p.relative_to(ROOT))) for p in (ROOT / "app").rglob("*.py")
            for m in re.findall(r"JobStatus\.(\w+)", p.read_text())}
    for member, path in sorted(used):
        assert member in JobStatus.__members__, f"arq JobStatus.{member} is gone; {path} uses it"
        assert JobStatus[member].value == member, f"arq JobStatus.{member} value changed; {path} prints it"


def test_create_pool_takes_our_codec_and_redis_settings_parse_our_urls() -> None:
    """create_pool accepts job_serializer/job_deserializer (else enqueueing silently pickles) and
    RedisSettings.from_dsn gives settings with the conn_timeout and conn_retries we set."""
    params = inspect.signature(create_pool).parameters
    for name in ("job_serializer", "job_deserializer"):
        assert name in params, f"arq create_pool no longer accepts {name}=; {RESOURCES} passes our codec"
    settings = RedisSettings.from_dsn("redis://127.0.0.1:6399/2")
    assert (settings.host, settings.port, settings.database) == ("127.0.0.1", 6399, 2), (
        f"arq RedisSettings.from_dsn parses differently; {RESOURCES}")
    for name in ("conn_timeout", "conn_retries"):
        assert hasattr(settings, name), f"arq RedisSettings.{name} is gone; {RESOURCES} sets it"
