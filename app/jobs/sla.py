"""The SLA monitor: classify open tasks against their SLA in one SQL statement, report changes.

The clock is the runbook's: time elapsed since the task was created, against its due date or
else its SLA target (SLA_CLOCK_START=started counts from started_at instead, once the task has
one). COMPLIANT below 75% of the SLA time used, WARNING from 75%, BREACHED from 100%. Only a change
of status writes the task, emits an agent event (SLA_WARNING / SLA_BREACH, inserted in bulk)
and notifies the assignee (and, on a breach, the escalation contact): repeated scans of
unchanged tasks are quiet and cheap. The UPDATE re-checks the old status, so two overlapping
scans (the cron and a manual trigger) cannot both report the same change.

The emails are written to the transactional outbox (app/queue/outbox.py) in the scan's own
transaction: they go out exactly when the events they report are committed. (Enqueued after the
commit, as before, a crash in between lost them; a failed write now rolls the scan back, and the
next scan reports the same changes.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

import asyncpg

from app.jobs.resources import Job
from app.notify.payloads import SendEmail
from app.notify.render import render
from app.queue import outbox
from app.queue.enqueue import JobRequest
from app.queue.payload import Payload
from app.queue.registry import JobSpec

WARNING_AT_PERCENT = 75.0
BREACHED_AT_PERCENT = 100.0
_NOTIFY_PAGE = 1000
_SCAN_WORK_MEM = "128MB"

ClockStart = Literal["created", "started"]

# The runbook's `task.dueDate || task.slaTarget`: the due date first.
TARGET_SQL = "COALESCE(t.due_at, t.sla_target_at)"


def clock_start_sql(start: ClockStart) -> str:
    """When a task's SLA clock started: created_at (the runbook), or started_at once it is set."""
    return "t.created_at" if start == "created" else "COALESCE(t.started_at, t.created_at)"


def percent_sql(start: ClockStart) -> str:
    """The share of the SLA time used by now(), in percent, of a task `t`; a target that is not
    after the start counts as used up (100)."""
    begin = clock_start_sql(start)
    return (f"CASE WHEN {TARGET_SQL} <= {begin} THEN 100.0 "
            f"ELSE 100.0 * extract(epoch FROM now() - {begin}) / extract(epoch FROM {TARGET_SQL} - {begin}) END")


def status_sql(percent: str) -> str:
    """The SLA status of a percentage (a SQL expression)."""
    return (f"CASE WHEN {percent} >= {BREACHED_AT_PERCENT} THEN 'BREACHED' "
            f"WHEN {percent} >= {WARNING_AT_PERCENT} THEN 'WARNING' ELSE 'COMPLIANT' END")


# Which open tasks a scan covers: $1 an org, $2 a task, or NULL for everything.
_SCOPE = f"""
    t.status IN ('NOT_STARTED', 'IN_PROGRESS')
    AND {TARGET_SQL} IS NOT NULL
    AND ($1::text IS NULL OR t.org_id = $1)
    AND ($2::text IS NULL OR t.id = $2)
"""


def _classify_sql(start: ClockStart) -> str:
    """Classify the scope, write only the tasks whose status changed, insert their events in
    bulk; one row per org with the events it got."""
    return f"""
WITH measured AS (
    SELECT t.id, t.org_id, t.sla_status AS old_status, {TARGET_SQL} AS target_at, {percent_sql(start)} AS pct
    FROM tasks t WHERE {_SCOPE}
), classified AS (
    SELECT m.*, {status_sql("m.pct")} AS new_status
    FROM measured m
), changed AS (
    UPDATE tasks t
    SET sla_status = c.new_status, sla_percentage = c.pct, sla_status_changed_at = now(), sla_checked_at = now()
    FROM classified c
    WHERE c.new_status <> c.old_status AND t.id = c.id
      AND t.sla_status = c.old_status  -- re-checked under the row lock: a concurrent scan won
    RETURNING c.*, (t.assignee_email IS NOT NULL OR t.escalation_email IS NOT NULL) AS has_contact
), events AS (
    INSERT INTO agent_events (org_id, task_id, event_type, payload)
    SELECT ch.org_id, ch.id,
           CASE ch.new_status WHEN 'WARNING' THEN 'SLA_WARNING' ELSE 'SLA_BREACH' END,
           CASE ch.new_status
             WHEN 'WARNING' THEN jsonb_build_object(
               'percentage', round(ch.pct::numeric, 1), 'slaTargetAt', ch.target_at,
               'remainingSeconds', greatest(0, round(extract(epoch FROM ch.target_at - now()))),
               'previousStatus', ch.old_status)
             ELSE jsonb_build_object(
               'percentage', round(ch.pct::numeric, 1), 'breachedAt', ch.target_at,
               'escalationRequired', true, 'previousStatus', ch.old_status)
           END
    FROM changed ch
    WHERE ch.new_status IN ('WARNING', 'BREACHED')
    RETURNING id, org_id, task_id, event_type
)
SELECT e.org_id, count(*) FILTER (WHERE e.event_type = 'SLA_WARNING') AS warnings,
       count(*) FILTER (WHERE e.event_type = 'SLA_BREACH') AS breaches,
       coalesce(array_agg(e.id) FILTER (WHERE n.id IS NOT NULL), '{{}}') AS event_ids  -- the ones to notify
FROM events e LEFT JOIN (SELECT id FROM changed WHERE has_contact) n ON n.id = e.task_id
GROUP BY e.org_id
"""


_CLASSIFY = {start: _classify_sql(start) for start in get_args(ClockStart)}

# Per-org totals of the scope after the update (statuses as stored now).
_TOTALS = f"""
SELECT t.org_id, count(*) AS checked,
       count(*) FILTER (WHERE t.sla_status = 'WARNING') AS warning_now,
       count(*) FILTER (WHERE t.sla_status = 'BREACHED') AS breached_now
FROM tasks t WHERE {_SCOPE}
GROUP BY t.org_id
"""

_CHANGES = f"""
SELECT e.id, e.org_id, e.event_type, t.id AS task_id, t.title, t.assignee_email, t.escalation_email,
       t.sla_percentage, {TARGET_SQL} AS target_at
FROM agent_events e JOIN tasks t ON t.id = e.task_id
WHERE e.id = ANY($1::bigint[]) AND (t.assignee_email IS NOT NULL OR t.escalation_email IS NOT NULL)
"""


class SlaScan(Payload):
    org_id: str | None = None
    task_id: str | None = None


async def sla_scan(job: Job, p: SlaScan) -> dict[str, Any]:
    async with job.res.db.acquire() as conn, conn.transaction():
        # The scan hashes every open task once; with the default 4 MB it spills to disk in batches.
        await conn.execute(f"SET LOCAL work_mem = '{_SCAN_WORK_MEM}'")
        changes = await conn.fetch(_CLASSIFY[job.res.settings.sla_clock_start], p.org_id, p.task_id)
        totals = await conn.fetch(_TOTALS, p.org_id, p.task_id)
        emails = await _notify(job, conn, [i for r in changes for i in r["event_ids"]])
    orgs = {r["org_id"]: {"checked": r["checked"], "warnings": 0, "breaches": 0, "warningNow": r["warning_now"],
                          "breachedNow": r["breached_now"], "errors": 0} for r in totals}
    for r in changes:  # one row per org that got events
        orgs[r["org_id"]].update(warnings=r["warnings"], breaches=r["breaches"])
    # "errors" stays 0 (kept for the result's shape): no email can fail apart from the scan now.
    summary = {k: sum(o[k] for o in orgs.values()) for k in ("checked", "warnings", "breaches", "errors")}
    job.log.info("sla_scanned", orgs=len(orgs), emails=emails, **summary)
    return {**summary, "orgs": orgs}


async def _notify(job: Job, conn: outbox.Db, event_ids: list[int]) -> int:
    """Write one email per recipient of each change to the outbox, in the scan's transaction;
    the number written."""
    written = 0
    for start in range(0, len(event_ids), _NOTIFY_PAGE):
        rows = await conn.fetch(_CHANGES, event_ids[start:start + _NOTIFY_PAGE])
        requests = [req for row in rows for req in _emails(row, job.res.settings.app_base_url)]
        written += len(await outbox.put(conn, job.res.registry, requests))
    return written


def _emails(row: asyncpg.Record, base_url: str) -> list[JobRequest]:
    """The warning goes to the assignee; a breach also to the escalation contact."""
    breached = row["event_type"] == "SLA_BREACH"
    recipients = [row["assignee_email"], row["escalation_email"] if breached else None]
    target: dt.datetime = row["target_at"]
    remaining = max(dt.timedelta(0), target - dt.datetime.now(dt.UTC))
    text, html = render("sla_change", status="BREACHED" if breached else "WARNING", title=row["title"],
                        target=f"{target:%Y-%m-%d %H:%M} UTC", percentage=round(row["sla_percentage"] or 0),
                        remaining=_duration(remaining), escalation=breached,
                        link=f"{base_url.rstrip('/')}/tasks/{row['task_id']}")
    subject = f"{'SLA breached' if breached else 'SLA warning'}: {row['title']}"
    return [
        JobRequest.of(SendEmail(idempotency_key=f"sla:{row['id']}:{to}", to=to, subject=subject, text=text,
                                html=html), job_id=f"sla-email:{row['id']}:{to}")
        for to in dict.fromkeys(r for r in recipients if r)
    ]


def _duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes} min"


SPEC = JobSpec(name="sla_scan", queue="sla-monitor", aliases=("sla-monitor",), payload=SlaScan, run=sla_scan,
               description="COMPLIANT / WARNING / BREACHED per task; events on change (cron */15)")
