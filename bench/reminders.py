"""Reminders at scale: 10,000 due reminders, one scan, every email delivered to a local SMTP server.

Times the span from enqueueing `scan_reminders` to the last delivery through a real worker
(queue scheduling-reminders at its configured concurrency) and counts duplicate deliveries,
which must be 0. Beside it, the limit in the same run: aiosmtplib alone feeding the same sink
from another process over as many connections as the worker's SMTP pool holds, with messages
of the reminders' mean size (bench/limits.py). Three rounds (one with --quick), each the worker
then the limit on a fresh seed and a fresh sink; the ratio is the median of the rounds' ratios.
`python -m bench.reminders`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from app.config.services import SmtpSettings
from app.db import migrate
from bench.env import BenchEnv, flush, run_alone
from bench.limits import smtp_limit_per_s
from bench.report import Row, median, median_of_rounds
from bench.workhorse import enqueuer, running
from tests.fakes.smtp import SmtpSink

# The worker's SMTP connections (SMTP_POOL_SIZE, default): the limit uses as many.
POOL_SIZE: int = SmtpSettings.model_fields["pool_size"].default
REMINDERS = 10_000
QUICK_REMINDERS = 1_000
GOAL_X_LIMIT = 0.5
WAIT_S = 300.0
ROUNDS = 3

_SEED_EVENTS = """
INSERT INTO scheduling_events (id, org_id, title, start_at, end_at, time_zone, participants)
SELECT 'bench-ev-' || n, 'org-' || (n % 100), 'Meeting ' || n, now() + interval '90 minutes',
       now() + interval '150 minutes', 'Europe/Berlin',
       jsonb_build_array(jsonb_build_object('email', 'p' || n || '@example.com', 'name', 'P ' || n))
FROM generate_series(1, $1) AS n
"""
_SEED_REMINDERS = """
INSERT INTO event_reminders (event_id, kind, reminder_time)
SELECT 'bench-ev-' || n, '2h', now() - interval '1 minute' FROM generate_series(1, $1) AS n
"""


# The subject of every seeded reminder (app/jobs/reminders/send.py, the seed's titles); other
# mail in the sink (another benchmark's leftovers) is neither counted nor measured.
_SUBJECT = b"\r\nSubject: Reminder: Meeting "


class _Reminders:
    """Until the sink holds `expected` reminders: counts the messages it has not read yet."""

    def __init__(self, expected: int) -> None:
        self.expected, self.read, self.found = expected, 0, 0

    def __call__(self, sink: SmtpSink) -> bool:
        self.found += sum(_SUBJECT in raw for raw in sink.raw[self.read:])
        self.read = len(sink.raw)
        return self.found >= self.expected


async def _clean(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM notifications WHERE idempotency_key LIKE 'reminder:%'")
    await db.execute("DELETE FROM scheduling_events WHERE id LIKE 'bench-ev-%'")


@dataclass(frozen=True, slots=True)
class Round:
    """One round: the worker's delivery of every reminder, then the limit on the same sink."""

    seconds: float
    delivered: int
    duplicates: int
    size: int
    """Mean bytes per message, which the limit's messages copy."""
    limit: float
    lag: float
    stray: int
    """Other mail that reached the sink meanwhile."""

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds


async def one_round(env: BenchEnv, db: asyncpg.Connection, reminders: int) -> Round:
    sink = SmtpSink()
    await sink.start()
    try:
        await _clean(db)
        await db.execute(_SEED_EVENTS, reminders)
        await db.execute(_SEED_REMINDERS, reminders)
        await flush(env.redis_url)
        async with running(env, ["scheduling-reminders"], **sink.env()) as worker, enqueuer(env) as enq:
            await worker.wait_ready()
            started = time.perf_counter()
            await enq.enqueue("scan_reminders", {"batchSize": 1000})
            arrived = _Reminders(reminders)
            try:
                await sink.wait_for(arrived, timeout_s=WAIT_S)
            except TimeoutError:
                raise RuntimeError(f"{arrived.found:,} of {reminders:,} delivered in {WAIT_S:.0f} s; "
                                   f"see {worker.log_path}") from None
            seconds = time.perf_counter() - started
            await asyncio.sleep(1.0)  # room for a late duplicate to show up
            lag = await worker.loop_lag_max_s()
        mine = [(raw, m) for raw, m in zip(sink.raw, sink.messages, strict=True) if _SUBJECT in raw]
        delivered, stray = len(mine), len(sink.raw) - len(mine)
        duplicates = delivered - len({str(m["To"]) for _, m in mine})
        size = sum(len(raw) for raw, _ in mine) // max(1, delivered)
        limit = await smtp_limit_per_s(sink.port, connections=POOL_SIZE, messages=reminders, size=size)
    finally:
        await sink.stop()
        await _clean(db)
        await flush(env.redis_url)
    return Round(seconds, delivered, duplicates, size, limit, lag, stray)


async def run(env: BenchEnv, *, quick: bool = False) -> list[Row]:
    reminders = QUICK_REMINDERS if quick else REMINDERS
    await migrate.migrate(env.database_url)
    db = await asyncpg.connect(env.database_url)
    try:
        rounds = [await one_round(env, db, reminders) for _ in range(1 if quick else ROUNDS)]
    finally:
        await db.close()
    section = f"reminders ({reminders:,} due, SMTP on 127.0.0.1)"
    ratio, spread = median_of_rounds([r.per_s / r.limit for r in rounds])
    per_s, seconds = median([r.per_s for r in rounds]), median([r.seconds for r in rounds])
    limit, size = median([r.limit for r in rounds]), rounds[0].size
    duplicates, stray = sum(r.duplicates for r in rounds), sum(r.stray for r in rounds)
    return [
        Row(section, f"scan to last delivery, median of {len(rounds)}",
            f"{ratio:.2f}x limit{spread}; {seconds:.1f} s, {per_s:,.0f} emails/s",
            f">= {GOAL_X_LIMIT}x limit", ratio >= GOAL_X_LIMIT),
        Row(section, f"limit: aiosmtplib alone, {POOL_SIZE} connections", f"{limit:,.0f} emails/s ({size:,} B each)"),
        Row(section, f"duplicate deliveries, {len(rounds)} rounds",
            str(duplicates) + (f" (and {stray:,} other messages, not counted)" if stray else ""), "0",
            duplicates == 0),
        Row(section, "worst event-loop lag in the worker", f"{max(r.lag for r in rounds) * 1000:.0f} ms"),
    ]


def main() -> None:
    run_alone(run)


if __name__ == "__main__":
    main()
