"""The SLA rule as a table: the percentage and status of the very SQL expressions the scan runs,
evaluated by PostgreSQL for tasks placed around now()."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.config import Settings, SettingsError
from app.jobs.sla import ClockStart, percent_sql, status_sql
from tests.support.services import ServiceUrls

# Hours from now (negative: in the past); None: the column is NULL.
Hours = float | None


@pytest.fixture
async def conn(services: ServiceUrls) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(services.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def measure(conn: asyncpg.Connection, clock: ClockStart, *, created: float, started: Hours = None,
                  due: Hours = None, target: Hours = None) -> tuple[float, str]:
    """(percent used, status) of one task, as the scan computes them."""
    at = "now() + $%d * interval '1 hour'"
    row = await conn.fetchrow(
        f"SELECT round(pct::numeric, 6) AS pct, {status_sql('pct')} AS status FROM ("
        f"  SELECT {percent_sql(clock)} AS pct"
        f"  FROM (VALUES ({at % 1}, {at % 2}, {at % 3}, {at % 4})) AS t(created_at, started_at, due_at, sla_target_at)"
        f") m", created, started, due, target)
    assert row is not None
    return float(row["pct"]), row["status"]


@pytest.mark.parametrize(("clock", "task", "percent", "status"), [
    ("created", {"created": -5, "due": 5}, 50, "COMPLIANT"),
    ("created", {"created": -7.4, "due": 2.6}, 74, "COMPLIANT"),
    ("created", {"created": -7.5, "due": 2.5}, 75, "WARNING"),
    ("created", {"created": -10, "due": 0}, 100, "BREACHED"),
    ("created", {"created": -15, "due": -5}, 150, "BREACHED"),
    # The due date comes first; the SLA target counts only without one.
    ("created", {"created": -9, "due": 1, "target": 9}, 90, "WARNING"),
    ("created", {"created": -5, "target": 5}, 50, "COMPLIANT"),
    # The default clock ignores started_at; SLA_CLOCK_START=started uses it once it is set.
    ("created", {"created": -9, "started": -1, "due": 1}, 90, "WARNING"),
    ("started", {"created": -9, "started": -1, "due": 1}, 50, "COMPLIANT"),
    ("started", {"created": -9, "due": 1}, 90, "WARNING"),
    # A target that is not after the clock's start is used up at once.
    ("created", {"created": -1, "due": -2}, 100, "BREACHED"),
    ("started", {"created": -9, "started": 2, "due": 1}, 100, "BREACHED"),
])
async def test_percent_used_and_status(conn: asyncpg.Connection, clock: ClockStart, task: dict[str, float],
                                       percent: float, status: str) -> None:
    """Elapsed since the clock's start over the time it had until the due date (else the SLA
    target): COMPLIANT under 75 %, WARNING from 75 %, BREACHED from 100 %."""
    measured, classified = await measure(conn, clock, **task)
    assert (round(measured, 3), classified) == (percent, status)


def test_the_clock_starts_at_creation_unless_configured() -> None:
    """SLA_CLOCK_START is `created` by default (the runbook), may be `started`, and nothing else."""
    assert Settings.load({}).sla_clock_start == "created"
    assert Settings.load({"SLA_CLOCK_START": "started"}).sla_clock_start == "started"
    with pytest.raises(SettingsError, match="SLA_CLOCK_START"):
        Settings.load({"SLA_CLOCK_START": "assigned"})
