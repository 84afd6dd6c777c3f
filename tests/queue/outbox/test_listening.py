"""How the relay learns of committed rows: the insert trigger's NOTIFY wakes it at once; while it
listens it polls only as a slow safety net; after PostgreSQL restarts it backs off, then listens
again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue import outbox
from app.queue.outbox import OutboxRelay
from app.runtime.startup import open_resources
from tests.support.outbox import QUEUE, insert_probes, rows, running, sample, wait_dispatched
from tests.support.postgres import PrivatePostgres

SettingsFactory = Callable[..., Settings]


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
