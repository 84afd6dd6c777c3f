"""SLA scan at scale: 1,000,000 open tasks across 100 orgs, one full scan through the worker.

Two figures: the steady state (statuses as the previous scan 15 minutes ago left them, so only
the tasks that crossed a threshold since change) and a cold scan (every task still COMPLIANT,
so every warning and breach is found and evented at once). Beside the cold scan, its limit on
this PostgreSQL in the same run: the same classification and the same event inserts as one
plain statement (an UPDATE over the classified rows feeding an INSERT … SELECT), sent straight
from here on the same fresh seed: no worker, no re-check, no totals, no notifications. The SLA
clock counts from `created_at` (app/jobs/sla.py's default), which the seed sets. The cold scan
and its limit run as pairs, each on a fresh seed, back to back; the ratio is the median of the
pairs' ratios (one pair with --quick). `python -m bench.sla`.
"""

from __future__ import annotations

import time

import asyncpg

from app.db import migrate
from app.jobs.sla import TARGET_SQL, percent_sql, status_sql
from bench.env import BenchEnv, flush, run_alone
from bench.report import Row, median, median_of_rounds
from bench.workhorse import enqueuer, running

TASKS = 1_000_000
QUICK_TASKS = 100_000
ORGS = 100
ROUNDS = 3
COLD_GOAL_X_LIMIT = 1.5
STEADY_GOAL_X_COLD = 0.3
LIMIT_WORK_MEM = "128MB"  # what app/jobs/sla.py gives its scan

# The limit: what the cold scan must do at the least, as one statement.
_LIMIT = f"""
WITH measured AS (
    SELECT t.id, t.org_id, t.sla_status AS old_status, {TARGET_SQL} AS target_at, {percent_sql("created")} AS pct
    FROM tasks t WHERE t.status IN ('NOT_STARTED', 'IN_PROGRESS') AND {TARGET_SQL} IS NOT NULL
), classified AS (
    SELECT m.*, {status_sql("m.pct")} AS new_status FROM measured m
), changed AS (
    UPDATE tasks t
    SET sla_status = c.new_status, sla_percentage = c.pct, sla_status_changed_at = now(), sla_checked_at = now()
    FROM classified c
    WHERE t.id = c.id AND c.new_status <> c.old_status
    RETURNING c.*
)
INSERT INTO agent_events (org_id, task_id, event_type, payload)
SELECT ch.org_id, ch.id, CASE ch.new_status WHEN 'WARNING' THEN 'SLA_WARNING' ELSE 'SLA_BREACH' END,
       jsonb_build_object('percentage', round(ch.pct::numeric, 1), 'slaTargetAt', ch.target_at,
                          'previousStatus', ch.old_status)
FROM changed ch WHERE ch.new_status IN ('WARNING', 'BREACHED')
"""

# Elapsed share of each task's 10-hour SLA is spread evenly over 0-150%; one task in 100 has an
# assignee to notify. `$2` is the status each task had 15 minutes ago (steady) or COMPLIANT (cold).
_SEED = """
INSERT INTO tasks (id, org_id, title, status, created_at, sla_target_at, assignee_email, sla_status)
SELECT 'bench-' || n, 'org-' || (n % $3), 'task ' || n,
       CASE WHEN n % 2 = 0 THEN 'IN_PROGRESS' ELSE 'NOT_STARTED' END,
       now() - (n::float / $1 * 1.5) * interval '10 hours',
       now() - (n::float / $1 * 1.5) * interval '10 hours' + interval '10 hours',
       CASE WHEN n % 100 = 0 THEN 'owner' || n || '@example.com' END,
       CASE WHEN NOT $2 THEN 'COMPLIANT'
            WHEN (n::float / $1 * 1.5 * 600 - 15) / 600 >= 1.0 THEN 'BREACHED'
            WHEN (n::float / $1 * 1.5 * 600 - 15) / 600 >= 0.75 THEN 'WARNING'
            ELSE 'COMPLIANT' END
FROM generate_series(1, $1) AS n
"""


# The scans write their emails to the outbox; rows a stopped worker had not yet relayed would be
# relayed by the next benchmark's worker, and sent into its SMTP sink.
_FORGET_EMAILS = "DELETE FROM job_outbox WHERE job_id LIKE 'sla-email:%'"


async def _clean(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM agent_events WHERE task_id LIKE 'bench-%'")
    await db.execute("DELETE FROM tasks WHERE id LIKE 'bench-%'")
    await db.execute(_FORGET_EMAILS)


async def seed(db: asyncpg.Connection, *, steady: bool, tasks: int) -> None:
    await _clean(db)
    await db.execute(_SEED, tasks, steady, ORGS)
    await db.execute("VACUUM ANALYZE tasks")
    await db.execute("VACUUM ANALYZE agent_events")
    # The timed part starts with no checkpoint owed: one falling inside a single figure (the
    # seed and each scan write hundreds of MB of WAL) would skew that figure alone.
    await db.execute("CHECKPOINT")


async def timed_scan(env: BenchEnv) -> tuple[float, dict[str, int]]:
    """Seconds from enqueueing `sla_scan` to its result, through a real worker."""
    await flush(env.redis_url)
    async with running(env, ["sla-monitor"]) as worker, enqueuer(env) as enq:
        await worker.wait_ready()
        started = time.perf_counter()
        job = await enq.enqueue("sla_scan", {})
        assert job is not None
        result = await enq.job(job.job_id, "sla-monitor").result(timeout_s=600, poll_delay=0.01)
        return time.perf_counter() - started, result


async def timed_limit(db: asyncpg.Connection) -> tuple[float, int]:
    """Seconds of the one-statement limit (with the scan's work_mem), and the events it inserted."""
    started = time.perf_counter()
    async with db.transaction():
        await db.execute(f"SET LOCAL work_mem = '{LIMIT_WORK_MEM}'")
        status = await db.execute(_LIMIT)
    return time.perf_counter() - started, int(status.split()[-1])


async def run(env: BenchEnv, *, quick: bool = False) -> list[Row]:
    tasks = QUICK_TASKS if quick else TASKS
    await migrate.migrate(env.database_url)
    db = await asyncpg.connect(env.database_url)
    try:
        await seed(db, steady=True, tasks=tasks)
        steady_s, steady = await timed_scan(env)
        pairs: list[tuple[float, float]] = []
        for _ in range(1 if quick else ROUNDS):
            await seed(db, steady=False, tasks=tasks)
            cold_s, cold = await timed_scan(env)
            await seed(db, steady=False, tasks=tasks)
            limit_s, limit_events = await timed_limit(db)
            pairs.append((cold_s, limit_s))
    finally:
        await _clean(db)
        await db.close()
        await flush(env.redis_url)
    section = f"SLA scan ({tasks:,} tasks, {ORGS} orgs)"
    cold_x, spread = median_of_rounds([c / limit for c, limit in pairs], "pairs")
    cold_s, limit_s = median([c for c, _ in pairs]), median([limit for _, limit in pairs])
    steady_x = steady_s / cold_s
    return [
        Row(section, f"cold (every task first seen), median of {len(pairs)}",
            f"{cold_x:.2f}x limit{spread}; {cold_s:.2f} s, {cold['warnings']:,} warnings, "
            f"{cold['breaches']:,} breaches",
            f"<= {COLD_GOAL_X_LIMIT}x limit", cold_x <= COLD_GOAL_X_LIMIT),
        Row(section, "steady (15 min since last)",
            f"{steady_x:.2f}x cold; {steady_s:.2f} s, {steady['warnings']:,} warnings, {steady['breaches']:,} breaches",
            f"<= {STEADY_GOAL_X_COLD}x cold", steady_x <= STEADY_GOAL_X_COLD),
        Row(section, f"limit: one UPDATE ... INSERT SELECT, cold, median of {len(pairs)}",
            f"{limit_s:.2f} s, {limit_events:,} events"),
    ]


def main() -> None:
    run_alone(run, "SLA clock from created_at")


if __name__ == "__main__":
    main()
