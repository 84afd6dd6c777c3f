"""`calendar_sync_fanout`: the cron's step, one sync job per ACTIVE connection.

Connections are read in keyset pages and each page is enqueued in one round trip. The job id
of each sync (app/calendar/connections.py sync_job_id) makes a second enqueue harmless while
the first is queued or running; replace_result lets the next tick enqueue again once it ended.
Watch channels are renewed by the syncs this enqueues (app/jobs/calendar_sync/watch.py).
"""

from __future__ import annotations

from typing import Any

from app.calendar import connections
from app.jobs.calendar_sync.payloads import CalendarSyncFanout, SyncCalendar
from app.jobs.resources import Job
from app.queue.enqueue import JobRequest


async def fan_out(job: Job, p: CalendarSyncFanout) -> dict[str, Any]:
    full = p.sync_type == "full"
    found = enqueued = 0
    after = ""
    while True:
        page = await connections.active_page(job.res.db, after=after, limit=p.batch_size)
        if not page:
            break
        requests = [JobRequest("sync_calendar", SyncCalendar(connection_id=cid, user_id=uid, sync_type=p.sync_type),
                               job_id=connections.sync_job_id(cid, full=full), replace_result=True)
                    for cid, uid in page]
        results = await job.res.enqueuer.enqueue_many(requests)
        found += len(page)
        enqueued += sum(1 for r in results if r is not None)
        after = page[-1][0]
    job.log.info("calendar_sync_fanned_out", sync_type=p.sync_type, connections=found, enqueued=enqueued)
    return {"syncType": p.sync_type, "connections": found, "enqueued": enqueued, "alreadyQueued": found - enqueued}
