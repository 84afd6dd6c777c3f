"""Google Calendar sync into scheduling events: one connection per job, and the cron fan-out.

`sync_calendar {connectionId, userId, syncType}` is what the web app sends (runbook 4.4);
`calendar_sync_fanout {syncType}` is what the cron sends (incremental every 15 min, full
nightly), one sync job per ACTIVE connection under a job id that makes double enqueues harmless.
"""

from __future__ import annotations

from typing import Any

from app.jobs.calendar_sync.fanout import fan_out
from app.jobs.calendar_sync.payloads import CalendarSyncFanout, SyncCalendar
from app.jobs.calendar_sync.run import count_failure, sync_calendar
from app.queue.registry import JobSpec

SPEC = JobSpec(name="sync_calendar", queue="calendar-sync", aliases=("calendar-sync",),
               payload=SyncCalendar, run=sync_calendar,
               on_dead_letter=count_failure,
               description="sync one Google Calendar connection (syncType full | incremental)")
FANOUT_SPEC = JobSpec(name="calendar_sync_fanout", queue="calendar-sync", payload=CalendarSyncFanout, run=fan_out,
                      description="enqueue a sync of every active connection (cron)")
SPECS: tuple[JobSpec[Any], ...] = (SPEC, FANOUT_SPEC)

__all__ = ["SPEC", "SPECS", "CalendarSyncFanout", "SyncCalendar"]
