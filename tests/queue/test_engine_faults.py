"""Faults the engine must absorb: malformed job records, NUL characters, a dead-letter store
that refuses writes, a short Redis outage and a process killed with -9."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import InvalidPayload
from app.jobs.resources import Resources
from app.queue import codec, keys
from app.runtime.embedded import RedisServer
from tests.support.postgres import PrivatePostgres
from tests.support.waits import wait_for_dead_letters
from tests.support.worker import in_process_worker, run_command, start_worker, wait_for_runs

QUEUE = "intake-routing"
EnvFactory = Callable[..., dict[str, str]]


async def write_raw_job(res: Resources, job_id: str, record: dict[str, object] | bytes) -> None:
    """A job written straight into Redis, as a foreign or buggy producer might."""
    raw = record if isinstance(record, bytes) else json.dumps(record).encode()
    await res.redis.psetex(keys.JOB_PREFIX + job_id, 600_000, raw)
    await res.redis.zadd(QUEUE, {job_id: 1})


MALFORMED: dict[str, dict[str, object]] = {
    "extra-positional": {"t": 1, "f": "ping", "a": [{}, "extra"], "k": {}, "et": 1},
    "extra-kwargs": {"t": 1, "f": "ping", "a": [{}], "k": {"note": "x"}, "et": 1},
    "args-not-a-list": {"t": 1, "f": "ping", "a": "abc", "k": {}, "et": 1},
    "try-not-a-number": {"t": "abc", "f": "ping", "a": [{}], "k": {}, "et": 1},
    "time-not-a-number": {"t": 1, "f": "ping", "a": [{}], "k": {}, "et": "abc"},
}


async def test_malformed_job_records_are_dead_lettered_once_and_the_worker_goes_on(
        settings: Settings, res: Resources) -> None:
    """Extra arguments, non-list arguments and non-numeric try counts or times, written straight
    into Redis, each end in the dead-letter store once with the reason; the queue keeps working."""
    for job_id, record in MALFORMED.items():
        await write_raw_job(res, job_id, record)
    async with in_process_worker(settings, [QUEUE]):
        await wait_for_dead_letters(res, len(MALFORMED))
        pong = await res.enqueuer.enqueue("ping", {}, queue=QUEUE)
        assert pong is not None
        assert (await res.enqueuer.job(pong.job_id, QUEUE).result(timeout_s=10))["pong"] is True
        await asyncio.sleep(0.3)  # a looping record would be dead-lettered again meanwhile
    letters = {d.job_id: d for d in await res.dlq.list(limit=100)}
    assert set(letters) == set(MALFORMED)
    assert all(d.attempts <= 1 and "malformed job record" in d.error_message for d in letters.values())
    assert "'k'" in letters["extra-kwargs"].error_message and "'t'" in letters["try-not-a-number"].error_message
    assert await res.redis.zcard(QUEUE) == 0


async def test_jobs_that_cannot_start_are_dead_lettered_once_with_the_reason(settings: Settings,
                                                                             res: Resources) -> None:
    """A queue entry whose record has expired and a record naming no known job never run: each is
    dead-lettered once with the reason and what it held, leaves a failed result and no lock,
    record or attempt counter; a record asking for a later attempt is run as that attempt."""
    await res.redis.zadd(QUEUE, {"gone": 1})
    await write_raw_job(res, "nope", {"t": None, "f": "no_such_job", "a": [{"x": 1}], "k": {}, "et": 1})
    await write_raw_job(res, "third", {"t": 3, "f": "ping", "a": [{}], "k": {}, "et": 1})
    async with in_process_worker(settings, [QUEUE]):
        await wait_for_dead_letters(res, 2)
        third = await res.enqueuer.job("third", QUEUE).result(timeout_s=10)
    assert third["attempt"] == 3
    letters = {d.job_id: d for d in await res.dlq.list()}
    assert set(letters) == {"gone", "nope"}
    assert (letters["gone"].error_class, letters["gone"].error_message) == ("JobExecutionFailed", "job expired")
    assert letters["nope"].error_message == "function 'no_such_job' not found"
    assert (letters["nope"].job_name, letters["nope"].payload, letters["nope"].attempts) == ("no_such_job", {"x": 1}, 1)
    for job_id in ("gone", "nope"):
        outcome = await res.enqueuer.job(job_id, QUEUE).outcome()
        assert outcome is not None and not outcome.success
    assert await res.redis.zcard(QUEUE) == 0
    assert not await res.redis.exists(*(prefix + job_id for job_id in ("gone", "nope", "third") for prefix in (
        keys.IN_PROGRESS_PREFIX, keys.RETRY_PREFIX, keys.JOB_PREFIX)))


async def test_a_record_nested_past_any_limit_is_dead_lettered_not_crashed_on(settings: Settings,
                                                                               res: Resources) -> None:
    """Written straight into Redis, 100,000 levels deep: decoding it would overflow the stack; it
    is dead-lettered once with the reason, and the worker goes on."""
    deep = b"[" * 100_000 + b"]" * 100_000
    await write_raw_job(res, "deep", b'{"t":null,"f":"ping","a":[' + deep + b'],"k":{},"et":1}')
    async with in_process_worker(settings, [QUEUE]):
        await wait_for_dead_letters(res, 1)
        pong = await res.enqueuer.enqueue("ping", {}, queue=QUEUE)
        assert pong is not None
        assert (await res.enqueuer.job(pong.job_id, QUEUE).result(timeout_s=10))["pong"] is True
    [letter] = await res.dlq.list()
    assert letter.job_id == "deep" and "nested too deeply" in letter.error_message
    assert await res.redis.zcard(QUEUE) == 0


async def test_a_nul_character_is_refused_naming_the_field(res: Resources) -> None:
    """A NUL in a string field is invalid input: refused at enqueue, naming the field."""
    with pytest.raises(InvalidPayload, match=r"orgId: contains a NUL character"):
        await res.enqueuer.enqueue("sla_scan", {"orgId": "org\x00x"})


async def test_a_nul_bearing_job_in_redis_is_dead_lettered_with_its_payload_escaped(
        settings: Settings, res: Resources) -> None:
    """A job that bypassed validation with a NUL in its payload still gets a dead letter (PostgreSQL
    jsonb refuses NUL): the payload is kept as escaped JSON and replays as the original."""
    record = {"t": 1, "f": "probe", "a": [{"tag": "nul\x00tag"}], "k": {}, "et": int(time.time() * 1000)}
    await write_raw_job(res, "nul-1", codec.dumps(record))
    async with in_process_worker(settings, [QUEUE]):
        await wait_for_dead_letters(res, 1)
    [letter] = await res.dlq.list()
    assert letter.job_id == "nul-1" and letter.error_class == "InvalidPayload"
    assert letter.payload is None and letter.raw_payload is not None and "\\u0000" in letter.raw_payload
    assert letter.replay_payload == {"tag": "nul\x00tag"}


async def test_a_dead_letter_postgres_keeps_refusing_is_parked_not_looped(
        make_settings: Callable[..., Settings], make_env: EnvFactory, res: Resources, tmp_path: Path) -> None:
    """With PostgreSQL gone, a failed job's dead letter cannot be written: the job is tried a
    bounded number of times, then the letter is parked in Redis, where `workhorse dlq list`
    shows it; once PostgreSQL is back, `workhorse dlq unpark` moves it into the table."""
    pg = await asyncio.to_thread(PrivatePostgres, tmp_path / "pg")
    try:
        settings = make_settings(database_url=pg.url, intake_routing_base_delay_s=0.05)
        async with in_process_worker(settings, [QUEUE]) as process:
            await asyncio.to_thread(pg.stop)
            await process.res.enqueuer.enqueue("probe", {"tag": "orphan", "failTimes": 99, "error": "permanent"},
                                               queue=QUEUE, job_id="orphan-1")
            async with asyncio.timeout(30):
                while not await process.res.dlq.parked():
                    await asyncio.sleep(0.05)
            runs = len(await wait_for_runs(res, "orphan", "start", 1))
            await asyncio.sleep(0.5)
            assert len(await wait_for_runs(res, "orphan", "start", 1)) == runs  # no more runs: parked
            [parked] = await process.res.dlq.parked()
            assert parked["job_id"] == "orphan-1" and "storeError" in parked
            await asyncio.to_thread(pg.start)
            env = make_env(database_url=pg.url)
            code, out, _ = await run_command(env, "app.cli", "dlq", "list")
            assert code == 0 and "1 dead letter(s) parked in Redis" in out and "orphan-1" in out
            code, out, _ = await run_command(env, "app.cli", "dlq", "unpark")
            assert code == 0 and "moved 1" in out
            [letter] = await process.res.dlq.list()
            assert letter.job_id == "orphan-1" and await process.res.dlq.parked() == []
    finally:
        await asyncio.to_thread(pg.cleanup)


async def test_a_short_redis_outage_reruns_no_job(make_env: EnvFactory, tmp_path: Path) -> None:
    """Redis stops for 3 s while jobs run: they finish, hold their outcome until Redis is back,
    write it, and none runs a second time."""
    from redis.asyncio import Redis

    redis = RedisServer(tmp_path / "redis", persist=True)
    await asyncio.to_thread(redis.start)
    worker = await start_worker(make_env(redis_url=redis.url, job_lock_ttl_s=30, job_heartbeat_s=1))
    ids = [f"blip-{n}" for n in range(6)]
    try:
        client = Redis.from_url(redis.url)
        for job_id in ids:
            record: dict[str, object] = {"t": None, "f": "ping", "a": [{"sleepMs": 1500}], "k": {},
                                         "et": int(time.time() * 1000)}
            await client.psetex(keys.JOB_PREFIX + job_id, 600_000, json.dumps(record))
            await client.zadd(QUEUE, {job_id: 1})
        await client.publish(keys.wake_channel(QUEUE), "1")
        async with asyncio.timeout(15):  # intake-routing runs 5 at once: wait until they all hold locks
            while len(await client.keys(keys.IN_PROGRESS_PREFIX + "blip-*")) < 5:
                await asyncio.sleep(0.02)
        await client.aclose()
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(redis.start)
        client = Redis.from_url(redis.url)
        async with asyncio.timeout(30):
            while await client.zcard(QUEUE) > 0:
                await asyncio.sleep(0.1)
        await client.aclose()
    finally:
        await worker.stop()
        await asyncio.to_thread(redis.stop)
    completed = [e["job_id"] for e in worker.events("job_completed")]
    assert sorted(completed) == ids, completed  # each ran to completion exactly once
    assert worker.events("job_outcome_held") and worker.events("job_outcome_written")
    assert not worker.events("job_retry_scheduled")


async def test_jobs_of_a_killed_process_run_again_within_10_s_despite_a_30_s_lock(
        make_env: EnvFactory, res: Resources) -> None:
    """kill -9 mid-job with the default 30 s job lock: a surviving process sees the killed one's
    liveness lapse and takes its job over within 10 s."""
    env = dict(job_lock_ttl_s=30, job_heartbeat_s=10, process_liveness_ttl_s=3)
    survivor = await start_worker(make_env(**env))
    victim = await start_worker(make_env(**env))
    try:
        await survivor.stop()  # only the victim may pick the job up first
        await res.enqueuer.enqueue("probe", {"tag": "orphaned", "sleepMs": 4000}, queue=QUEUE)
        await wait_for_runs(res, "orphaned", "start", 1)
        victim.signal(signal.SIGKILL)
        await victim.wait()
        killed_at = time.monotonic()
        survivor = await start_worker(make_env(**env))
        starts = await wait_for_runs(res, "orphaned", "start", 2, timeout_s=20)
        recovered_after = time.monotonic() - killed_at
        await wait_for_runs(res, "orphaned", "done", 1, timeout_s=20)
        assert survivor.events("job_reclaimed_from_dead_process")
    finally:
        await survivor.stop()
    assert recovered_after < 10, recovered_after
    assert [s["attempt"] for s in starts] == [1, 2]


async def test_a_live_process_running_past_its_lock_is_never_robbed(make_env: EnvFactory, res: Resources) -> None:
    """A job longer than the lock on a live process: the other process, which claims with the
    liveness check, never starts it too."""
    env = dict(job_lock_ttl_s=2, job_heartbeat_s=0.5, process_liveness_ttl_s=1)
    a, b = await start_worker(make_env(**env)), await start_worker(make_env(**env))
    try:
        await res.enqueuer.enqueue("probe", {"tag": "slow", "sleepMs": 5000}, queue=QUEUE)
        await wait_for_runs(res, "slow", "done", 1, timeout_s=20)
    finally:
        await a.stop()
        await b.stop()
    assert len(await wait_for_runs(res, "slow", "start", 1)) == 1


async def test_a_live_process_whose_loop_stalls_past_the_lock_floor_keeps_its_job(
        make_env: EnvFactory, res: Resources) -> None:
    """A job blocks its process's event loop for 3 s (no heartbeat can run) with JOB_LOCK_TTL_S=1:
    the lock outlives the queue's timeout anyway, so the other process never runs the job too."""
    env = dict(job_lock_ttl_s=1, job_heartbeat_s=0.3, process_liveness_ttl_s=1)
    a, b = await start_worker(make_env(**env)), await start_worker(make_env(**env))
    try:
        await res.enqueuer.enqueue("probe", {"tag": "stall", "blockMs": 3000}, queue=QUEUE)
        await wait_for_runs(res, "stall", "done", 1, timeout_s=20)
        await asyncio.sleep(1.5)  # a second run would have started by now
    finally:
        await a.stop()
        await b.stop()
    assert len(await wait_for_runs(res, "stall", "start", 1)) == 1
