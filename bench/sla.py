"""SLA scan at scale: 1,000,000 open tasks across 100 orgs, one full scan through the worker.

Two figures: the steady state (statuses as the previous scan 15 minutes ago left them, so only
the tasks that crossed a threshold since change) and a cold scan (every task still COMPLIANT,
so every warning and breach is found and evented at once). `python -m bench.sla`.
"""

from __future__ import annotations

import time

import asyncpg

from app.db import migrate
from bench.env import BenchEnv, flush, run_alone
from bench.report import Row
from bench.workhorse import enqueuer, running

TASKS = 1_000_000
ORGS = 100
GOAL_S = 10.0

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


async def seed(db: asyncpg.Connection, *, steady: bool, tasks: int) -> None:
    await db.execute("DELETE FROM agent_events WHERE task_id LIKE 'bench-%'")
    await db.execute("DELETE FROM tasks WHERE id LIKE 'bench-%'")
    await db.execute(_SEED, tasks, steady, ORGS)
    await db.execute("VACUUM ANALYZE tasks")


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


async def run(env: BenchEnv, *, tasks: int = TASKS) -> list[Row]:
    await migrate.migrate(env.database_url)
    db = await asyncpg.connect(env.database_url)
    rows: list[Row] = []
    try:
        for steady in (True, False):
            await seed(db, steady=steady, tasks=tasks)
            seconds, result = await timed_scan(env)
            label = "steady (15 min since last)" if steady else "cold (every task first seen)"
            rows.append(Row(f"SLA scan ({tasks:,} tasks, {ORGS} orgs)", label,
                            f"{seconds:.2f} s; {result['warnings']:,} warnings, {result['breaches']:,} breaches",
                            f"< {GOAL_S:.0f} s", seconds < GOAL_S))
    finally:
        await db.execute("DELETE FROM agent_events WHERE task_id LIKE 'bench-%'")
        await db.execute("DELETE FROM tasks WHERE id LIKE 'bench-%'")
        await db.close()
        await flush(env.redis_url)
    return rows


def main() -> None:
    run_alone(run)


if __name__ == "__main__":
    main()
