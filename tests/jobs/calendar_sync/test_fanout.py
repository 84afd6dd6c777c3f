"""calendar_sync_fanout, the cron's step: one incremental sync per ACTIVE connection, under its
fixed job id."""

from __future__ import annotations

from collections.abc import Callable

from app.calendar import connections
from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.google import GoogleFake
from tests.support.calendar_sync import QUEUE, connect
from tests.support.jobs import result_of
from tests.support.worker import in_process_worker


async def test_the_cron_fan_out_enqueues_one_incremental_sync_per_active_connection(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """The cron's job enqueues a sync of each ACTIVE connection under its fixed job id (a sync
    already queued for one is not enqueued twice); inactive connections are left alone."""
    for conn_id in ("a", "b", "c"):
        await connect(res, google, conn_id, f"user-{conn_id}")
    await res.db.execute("UPDATE calendar_connections SET status = 'INACTIVE' WHERE id = 'c'")
    # Already queued (deferred, so it stays queued during the test): the fan-out adds no second one.
    await res.enqueuer.enqueue("sync_calendar", {"connectionId": "a", "syncType": "incremental"},
                               job_id=connections.sync_job_id("a", full=False), defer_s=600)
    fanned = await res.enqueuer.enqueue("calendar_sync_fanout", {"syncType": "incremental"})
    async with in_process_worker(sync_settings(), [QUEUE]):
        result = await result_of(res, fanned, QUEUE)
        await res.enqueuer.job(connections.sync_job_id("b", full=False), QUEUE).result(timeout_s=20)
    assert result == {"syncType": "incremental", "connections": 2, "enqueued": 1, "alreadyQueued": 1}
    synced = await res.db.fetch("SELECT id FROM calendar_connections WHERE last_synced_at IS NOT NULL ORDER BY id")
    assert [r["id"] for r in synced] == ["b"]
