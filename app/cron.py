"""The cron table. A cron entry only enqueues its job; the job runs on its own queue.

Missed ticks (no process running at the time) are not caught up: the next tick runs as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.queue.crontab import CronExpr


@dataclass(frozen=True, slots=True)
class CronEntry:
    name: str
    schedule: CronExpr
    job: str
    payload: dict[str, Any] = field(default_factory=dict)


CRON: tuple[CronEntry, ...] = (
    CronEntry("sla-scan", CronExpr.parse("*/15 * * * *"), job="sla_scan"),
    CronEntry("reminder-scan", CronExpr.parse("*/5 * * * *"), job="scan_reminders"),
)
