"""The outbox relay: rows committed in the writer's transaction become jobs, once each, whatever
fails in between (a rollback, a late commit, a kill between the Redis write and the commit,
Redis down), and dispatched rows are archived after seven days.

Writers here use plain SQL (what the web app does); relays run in-process (inside the real
Process, or a bare OutboxRelay) and, for the crash test, in a subprocess killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.config import PROJECT_ROOT, Settings
from app.jobs.resources import Resources
from app.queue.enqueue import Enqueuer
from app.queue.outbox import OutboxRelay
from tests.support.outbox import QUEUE, insert_probes, rows, running, sample, starts_once_done, wait_dispatched
from tests.support.services import free_port
from tests.support.worker import in_process_worker, subprocess_env

SettingsFactory = Callable[..., Settings]
EnvFactory = Callable[..., dict[str, str]]


async def test_rows_committed_by_plain_sql_run_once_with_two_worker_processes(
        make_settings: SettingsFactory, res: Resources) -> None:
    """Two workers (each with its relay) and 300 rows committed in one transaction, one of them
    through workhorse_enqueue() with the writer's own job id: every job runs exactly once, and
    each row is DISPATCHED with the job id derived from it (or the writer's)."""
    tags = [f"two-{n}" for n in range(300)]
    async with in_process_worker(make_settings(), [QUEUE]), in_process_worker(make_settings(), [QUEUE]):
        async with res.db.acquire() as conn, conn.transaction():
            ids = await insert_probes(conn, tags[:-1])
            chosen = await conn.fetchval("SELECT workhorse_enqueue('probe', $1::text::json, $2, 'my-own-id')",
                                         json.dumps({"tag": tags[-1]}), QUEUE)
        starts = await starts_once_done(res, tags)
    assert set(starts.values()) == {1} and len(starts) == len(tags)
    assert await rows(res) == {**{i: ("DISPATCHED", f"outbox:{i}") for i in ids}, chosen: ("DISPATCHED", "my-own-id")}


async def test_rolled_back_rows_never_run_and_a_late_commit_with_a_lower_id_is_not_skipped(res: Resources) -> None:
    """A transaction that inserts and rolls back leaves nothing to run. A row inserted first but
    committed after a later row (a lower id committed late) is still dispatched: the relay keeps
    no high-water mark."""
    async with running(OutboxRelay(res)):
        slow = await res.db.acquire()
        try:
            slow_tx = slow.transaction()
            await slow_tx.start()
            [late] = await insert_probes(slow, ["late"])
            async with res.db.acquire() as conn:
                with pytest.raises(RuntimeError):
                    async with conn.transaction():
                        await insert_probes(conn, ["never"])
                        raise RuntimeError("the web app's change failed")
            [early] = await insert_probes(res.db, ["early"])
            await wait_dispatched(res, [early])
            await slow_tx.commit()
        finally:
            await res.db.release(slow)
        await wait_dispatched(res, [late])
    assert late < early
    assert await rows(res) == {late: ("DISPATCHED", f"outbox:{late}"), early: ("DISPATCHED", f"outbox:{early}")}
    assert await res.redis.zcard(QUEUE) == 2


async def test_a_relay_killed_between_the_redis_write_and_its_commit_leaves_one_job_per_row(
        make_env: EnvFactory, res: Resources) -> None:
    """SIGKILL after the jobs reached Redis and before the rows were marked: PostgreSQL rolls the
    marking back, the next relay claims the rows again, finds their jobs already queued under the
    ids derived from the rows, and only marks them. Every job runs once."""
    env = make_env()
    tags = [f"crash-{n}" for n in range(20)]
    ids = await insert_probes(res.db, tags)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import asyncio, tests.support.outbox as t; asyncio.run(t.hang_after_enqueue())",
        env=subprocess_env(env), cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            said = json.loads(await proc.stdout.readline())
        assert said == {"enqueued": len(tags)}
        assert await res.db.fetchval("SELECT count(*) FROM job_outbox WHERE status = 'PENDING'") == len(tags)
    finally:
        proc.kill()
        await proc.wait()
    async with in_process_worker(Settings.load(env), [QUEUE]) as process:
        starts = await starts_once_done(res, tags)
        await wait_dispatched(res, ids)
        assert sample(process.res, "workhorse_outbox_rows_total", outcome="duplicate") == len(tags)
        assert sample(process.res, "workhorse_outbox_rows_total", outcome="dispatched") == 0
    assert set(starts.values()) == {1} and len(starts) == len(tags)
    assert await rows(res) == {i: ("DISPATCHED", f"outbox:{i}") for i in ids}


async def test_redis_down_rolls_the_batch_back_and_the_rows_wait(res: Resources) -> None:
    """With Redis unreachable the batch rolls back: its rows stay PENDING with the attempt and
    the error recorded, and go out once Redis answers."""
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    ids = await insert_probes(res.db, ["r1", "r2"])
    try:
        with pytest.raises(RedisError):
            await OutboxRelay(res, enqueuer=Enqueuer(dead, res.registry)).dispatch_batch()
    finally:
        await dead.aclose()
    waiting = await res.db.fetch("SELECT status, attempts, last_error FROM job_outbox ORDER BY id")
    assert [(r["status"], r["attempts"]) for r in waiting] == [("PENDING", 1), ("PENDING", 1)]
    assert all("ConnectionError" in r["last_error"] for r in waiting)
    result = await OutboxRelay(res).dispatch_batch()
    assert result.dispatched == 2
    assert await rows(res) == {i: ("DISPATCHED", f"outbox:{i}") for i in ids}


async def test_dispatched_rows_are_archived_after_seven_days(res: Resources) -> None:
    """DISPATCHED rows older than OUTBOX_ARCHIVE_AFTER_S (7 days) move to job_outbox_archive
    whole; younger ones, and FAILED or PENDING rows of any age, stay."""
    ids = await insert_probes(res.db, ["old", "young"])
    await OutboxRelay(res).dispatch_batch()
    failed = await res.db.fetchval("SELECT workhorse_enqueue('no_such_job')")
    await OutboxRelay(res).dispatch_batch()
    [pending] = await insert_probes(res.db, ["pending"])
    await res.db.execute("UPDATE job_outbox SET dispatched_at = now() - interval '8 days', "
                         "created_at = now() - interval '8 days' WHERE id = $1 OR id = $2", ids[0], failed)
    await res.db.execute("UPDATE job_outbox SET dispatched_at = now() - interval '6 days' WHERE id = $1", ids[1])
    assert await OutboxRelay(res).archive() == 1
    assert set(await rows(res)) == {ids[1], failed, pending}
    archived = await res.db.fetchrow("SELECT * FROM job_outbox_archive")
    assert archived is not None
    assert (archived["id"], archived["dispatched_job_id"]) == (ids[0], f"outbox:{ids[0]}")
    assert archived["payload"] == {"tag": "old"}
