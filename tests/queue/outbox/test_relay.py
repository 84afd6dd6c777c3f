"""The transactional outbox: rows committed in the writer's transaction become jobs, once each.

Writers here use plain SQL (what the web app does); relays run in-process (inside the real
Process, or a bare OutboxRelay) and, for the crash test, in a subprocess killed with SIGKILL."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.config import PROJECT_ROOT, Settings
from app.errors import InvalidPayload
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.notify.payloads import SendEmail
from app.queue import keys, outbox
from app.queue.enqueue import Enqueued, Enqueuer, JobRequest
from app.queue.outbox import OutboxRelay
from app.runtime.startup import open_resources
from tests.fakes.smtp import SmtpSink
from tests.support.jobs import RUNS_KEY
from tests.support.postgres import PrivatePostgres
from tests.support.services import free_port
from tests.support.worker import in_process_worker, subprocess_env

QUEUE = "intake-routing"
SettingsFactory = Callable[..., Settings]
EnvFactory = Callable[..., dict[str, str]]
Db = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def insert_probes(db: Db, tags: list[str]) -> list[int]:
    """Probe jobs written the way the web app writes them: a plain multi-row INSERT."""
    rows = await db.fetch(
        "INSERT INTO job_outbox (job_name, payload, queue)"
        " SELECT 'probe', json_build_object('tag', t), $2 FROM unnest($1::text[]) AS t RETURNING id",
        tags, QUEUE)
    return [r["id"] for r in rows]


async def rows(res: Resources) -> dict[int, tuple[str, str | None]]:
    """Each outbox row's status and its job id (dispatched) or error (failed)."""
    found = await res.db.fetch("SELECT id, status, coalesce(dispatched_job_id, last_error) AS detail FROM job_outbox")
    return {r["id"]: (r["status"], r["detail"]) for r in found}


async def wait_dispatched(res: Resources, ids: list[int], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while await res.db.fetchval(
                "SELECT count(*) FROM job_outbox WHERE id = ANY($1::bigint[]) AND status <> 'DISPATCHED'", ids):
            await asyncio.sleep(0.02)


async def starts_once_done(res: Resources, tags: list[str], timeout_s: float = 60.0) -> collections.Counter[str]:
    """How often each probe started, read once every one of `tags` has finished."""
    async with asyncio.timeout(timeout_s):
        while True:
            runs = [json.loads(r) for r in await res.redis.lrange(RUNS_KEY, 0, -1)]
            if {r["tag"] for r in runs if r["event"] == "done"} >= set(tags):
                return collections.Counter(r["tag"] for r in runs if r["event"] == "start")
            await asyncio.sleep(0.05)


def sample(res: Resources, name: str, **labels: str) -> float:
    return res.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    """The relay's loop in the background, stopped on exit."""
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


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


async def test_a_notification_wakes_the_relay_without_waiting_for_the_poll(
        make_settings: SettingsFactory) -> None:
    """With polling every 60 s, a committed row is still dispatched at once: the insert trigger's
    NOTIFY wakes the relay."""
    settings = make_settings(outbox_poll_interval_ms=60_000)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res, \
            running(OutboxRelay(res)) as relay:
        async with asyncio.timeout(10):
            await relay.listening.wait()
        await asyncio.sleep(0.2)  # let the first pass (on connect) finish and start its 60 s wait
        [row_id] = await insert_probes(res.db, ["woken"])
        await wait_dispatched(res, [row_id], timeout_s=5)
        assert sample(res, "workhorse_outbox_lag_seconds_count") == 1
        assert sample(res, "workhorse_outbox_lag_seconds_sum") < 5


async def test_while_listening_the_relay_polls_only_as_a_slow_safety_net(make_settings: SettingsFactory) -> None:
    """A row committed without a notification (its trigger did not fire) is not picked up at
    OUTBOX_POLL_INTERVAL_MS while LISTEN is up (an idle process would query PostgreSQL ten
    times a second), but by the safety-net poll, every LISTENING_POLL_S."""
    settings = make_settings(outbox_poll_interval_ms=100)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res, \
            running(OutboxRelay(res)) as relay:
        async with asyncio.timeout(10):
            await relay.listening.wait()
        await asyncio.sleep(0.2)  # the first pass (on connect) is done: the next poll is ~5 s away
        async with res.db.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no trigger, no NOTIFY
            [row_id] = await insert_probes(conn, ["unannounced"])
        await asyncio.sleep(1.0)  # ten polls' worth at OUTBOX_POLL_INTERVAL_MS
        assert (await rows(res))[row_id][0] == "PENDING"
        await wait_dispatched(res, [row_id], timeout_s=outbox.relay.LISTENING_POLL_S + 2)


class HangingRelay(OutboxRelay):
    """A relay that writes its batch to Redis, says so on stdout, then hangs before its commit."""

    async def _enqueue(self, requests: list[JobRequest]) -> list[Enqueued | None]:
        enqueued = await super()._enqueue(requests)
        print(json.dumps({"enqueued": sum(1 for e in enqueued if e)}), flush=True)
        await asyncio.Event().wait()
        return enqueued


async def hang_after_enqueue() -> None:
    """The crash test's subprocess (settings from its environment, like any entry point)."""
    settings = Settings.load()
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        await HangingRelay(res).dispatch_batch()


async def test_a_relay_killed_between_the_redis_write_and_its_commit_leaves_one_job_per_row(
        make_env: EnvFactory, res: Resources) -> None:
    """SIGKILL after the jobs reached Redis and before the rows were marked: PostgreSQL rolls the
    marking back, the next relay claims the rows again, finds their jobs already queued under the
    ids derived from the rows, and only marks them. Every job runs once."""
    env = make_env()
    tags = [f"crash-{n}" for n in range(20)]
    ids = await insert_probes(res.db, tags)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import asyncio, tests.queue.outbox.test_relay as t; asyncio.run(t.hang_after_enqueue())",
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


async def test_rows_that_can_never_be_enqueued_fail_with_the_reason_and_a_dead_letter_and_block_nothing(
        res: Resources) -> None:
    """An unknown job, a payload missing a field, one with a NUL character (json keeps it; jsonb
    would have refused the web app's whole transaction), one nested 1,000 deep and an unknown
    queue: each row is FAILED with its reason and dead-lettered; the good rows around them are
    dispatched in the same batch."""
    deep = "[" * 1000 + "]" * 1000
    bad = {
        "no_such_job": ("no_such_job", '{"tag": "x"}', QUEUE),
        "tag": ("probe", '{"failTimes": 1}', QUEUE),
        "NUL": ("probe", '{"tag": "nul\\u0000tag"}', QUEUE),
        "nested deeper": ("probe", '{"tag": "deep", "x": ' + deep + "}", QUEUE),
        "unknown queue": ("probe", '{"tag": "q"}', "no-such-queue"),
    }
    [good_1] = await insert_probes(res.db, ["good-1"])
    failing = {}
    for reason, (name, payload, queue) in bad.items():
        failing[reason] = await res.db.fetchval("SELECT workhorse_enqueue($1, $2::text::json, $3)",
                                                name, payload, queue)
    [good_2] = await insert_probes(res.db, ["good-2"])
    result = await OutboxRelay(res).dispatch_batch()
    assert (result.claimed, result.dispatched, result.failed) == (7, 2, 5)
    found = await rows(res)
    assert found[good_1] == ("DISPATCHED", f"outbox:{good_1}") and found[good_2] == ("DISPATCHED", f"outbox:{good_2}")
    for reason, row_id in failing.items():
        status, error = found[row_id]
        assert status == "FAILED" and error is not None and reason in error, (reason, error)
    letters = {d.job_id: d for d in await res.dlq.list()}
    assert set(letters) == {f"outbox:{i}" for i in failing.values()}
    assert letters[f"outbox:{failing['no_such_job']}"].error_class == "UnknownJob"
    nul = letters[f"outbox:{failing['NUL']}"]
    assert nul.error_class == "InvalidPayload" and nul.replay_payload == {"tag": "nul\x00tag"}
    assert letters[f"outbox:{failing['tag']}"].queue == QUEUE
    assert sample(res, "workhorse_outbox_rows_total", outcome="failed") == 5
    assert await OutboxRelay(res).dispatch_batch() == outbox.BatchResult()  # nothing left, nothing retried


async def test_huge_payloads_fail_unread_and_a_batch_stops_at_its_byte_budget(res: Resources) -> None:
    """A payload over the 1 MB limit is FAILED by its size alone (never read into the worker);
    ten 0.9 MB payloads go out in two batches, since one batch reads at most 8 MB."""
    huge = await res.db.fetchval("SELECT workhorse_enqueue('probe', json_build_object('tag', repeat('h', 2000000)),"
                                 " $1)", QUEUE)
    big = await insert_probes(res.db, [f"{n}{'b' * 900_000}" for n in range(10)])
    relay = OutboxRelay(res)
    first = await relay.dispatch_batch()
    second = await relay.dispatch_batch()
    assert (first.failed, first.dispatched, first.more) == (1, 8, True)
    assert (second.dispatched, second.more) == (2, False)
    found = await rows(res)
    assert found[huge][0] == "FAILED" and re.search(r"\(payload\): 2000\d{3} bytes of JSON; at most 1000000",
                                                   str(found[huge][1]))
    assert all(found[i][0] == "DISPATCHED" for i in big)
    [letter] = await res.dlq.list()
    assert letter.job_id == f"outbox:{huge}" and letter.payload is None


async def test_ten_thousand_rows_committed_at_once_go_out_in_batches(make_settings: SettingsFactory) -> None:
    """10,000 rows from one INSERT (one notification) are dispatched in batches of
    OUTBOX_BATCH_SIZE, each row once; the gauges then show nothing waiting."""
    settings = make_settings(outbox_batch_size=500)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        await res.db.execute(
            "INSERT INTO job_outbox (job_name, payload, queue)"
            " SELECT 'probe', json_build_object('tag', 'bulk-' || g), $1 FROM generate_series(1, 10000) g", QUEUE)
        relay = OutboxRelay(res)
        await relay.refresh_gauges()
        assert sample(res, "workhorse_outbox_rows_waiting") == 10_000
        async with running(relay):
            async with asyncio.timeout(120):
                while await res.db.fetchval("SELECT count(*) FROM job_outbox WHERE status = 'PENDING'"):
                    await asyncio.sleep(0.1)
        await relay.refresh_gauges()
        assert await res.redis.zcard(QUEUE) == 10_000
        assert sample(res, "workhorse_outbox_batch_size_count") == 20
        assert sample(res, "workhorse_outbox_batch_size_sum") == 10_000
        assert sample(res, "workhorse_outbox_rows_total", outcome="dispatched") == 10_000
        assert sample(res, "workhorse_outbox_rows_waiting") == 0


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


async def test_the_relay_outlives_a_postgres_restart_and_listens_again(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    """PostgreSQL stops and starts under a running relay: it backs off meanwhile, then dispatches
    a row committed after the restart at once (its LISTEN connection is back; polling is 60 s)."""
    pg = await asyncio.to_thread(PrivatePostgres, tmp_path / "pg")
    try:
        settings = make_settings(database_url=pg.url, outbox_poll_interval_ms=60_000)
        async with open_resources(settings, build_registry(settings), start_embedded=False,
                                  apply_migrations=True) as res, running(OutboxRelay(res)) as relay:
            before = await insert_probes(res.db, ["before"])
            await wait_dispatched(res, before)
            await asyncio.to_thread(pg.stop)
            async with asyncio.timeout(10):
                while relay.listening.is_set():
                    await asyncio.sleep(0.02)
            await asyncio.to_thread(pg.start)
            async with asyncio.timeout(30):
                await relay.listening.wait()
            after = await _insert_when_up(res, ["after"])
            await wait_dispatched(res, after, timeout_s=15)
            assert await res.redis.zcard(QUEUE) == 2
    finally:
        await asyncio.to_thread(pg.cleanup)


async def _insert_when_up(res: Resources, tags: list[str]) -> list[int]:
    """The pool may hand out a connection the restart broke: the writer retries, as any would."""
    async with asyncio.timeout(20):
        while True:
            try:
                return await insert_probes(res.db, tags)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                await asyncio.sleep(0.1)


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


async def test_put_writes_validated_jobs_in_the_callers_transaction(res: Resources) -> None:
    """outbox.put() (how our own jobs write to the outbox) validates first, all or nothing, and
    writes in the caller's transaction: a rollback takes the rows with it."""
    email = SendEmail(idempotency_key="k1", to="amy@example.com", subject="Hi", text="Hello")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    async with res.db.acquire() as conn:
        with pytest.raises(InvalidPayload, match="tag"):
            async with conn.transaction():
                await outbox.put(conn, res.registry, [JobRequest.of(email), JobRequest("probe", {}, queue=QUEUE)])
        async with conn.transaction():
            ids = await outbox.put(conn, res.registry, [JobRequest.of(email, job_id="e-1"),
                                                        JobRequest("probe", {"tag": "p"}, queue=QUEUE, run_at=later)])
    written = await res.db.fetch("SELECT job_name, payload, queue, job_id, run_at FROM job_outbox ORDER BY id")
    assert [(r["job_name"], r["queue"], r["job_id"], r["run_at"]) for r in written] == [
        ("send_email", None, "e-1", None), ("probe", QUEUE, None, later)]
    assert written[0]["payload"]["idempotencyKey"] == "k1"
    await OutboxRelay(res).dispatch_batch()
    assert await res.redis.zscore(QUEUE, f"outbox:{max(ids)}") == int(later.timestamp() * 1000)
    assert await res.redis.exists(keys.JOB_PREFIX + "e-1")


async def test_the_sla_scan_writes_its_emails_to_the_outbox_in_its_own_transaction(
        make_settings: SettingsFactory, res: Resources, smtp_sink: SmtpSink) -> None:
    """A breach found by the scan puts one send_email row per recipient into job_outbox in the
    transaction that records the SLA event (same transaction start time), and each email is sent
    once however often the scan runs again."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=12)
    await res.db.execute(
        "INSERT INTO tasks (id, org_id, title, status, created_at, sla_target_at, assignee_email, escalation_email)"
        " VALUES ('t1', 'org-1', 'Call back ACME', 'IN_PROGRESS', $1, $2, 'amy@example.com', 'boss@example.com')",
        created, created + dt.timedelta(hours=10))
    settings = make_settings(**smtp_sink.env())
    async with in_process_worker(settings, ["sla-monitor", "scheduling-reminders"]) as process:
        for _ in range(3):
            job = await process.res.enqueuer.enqueue("sla_scan", {})
            assert job is not None
            await process.res.enqueuer.job(job.job_id, "sla-monitor").result(timeout_s=20, poll_delay=0.02)
        await smtp_sink.wait_for(lambda s: len(s.messages) == 2)
        await wait_dispatched(res, [r["id"] for r in await res.db.fetch("SELECT id FROM job_outbox")])
    [event] = await res.db.fetch("SELECT id, created_at FROM agent_events")
    written = await res.db.fetch("SELECT job_name, job_id, created_at FROM job_outbox ORDER BY job_id")
    assert [(r["job_name"], r["job_id"]) for r in written] == [
        ("send_email", f"sla-email:{event['id']}:amy@example.com"),
        ("send_email", f"sla-email:{event['id']}:boss@example.com")]
    assert {r["created_at"] for r in written} == {event["created_at"]}
    assert sorted(str(m["To"]) for m in smtp_sink.messages) == ["amy@example.com", "boss@example.com"]
