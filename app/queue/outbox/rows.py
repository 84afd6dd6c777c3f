"""A claimed outbox row and the budget that bounds one batch's payload bytes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.queue import keys
from app.queue.payload import MAX_PAYLOAD_BYTES

BATCH_MAX_BYTES = 8_000_000
"""Payload bytes one batch reads; rows past it wait for the next batch (at least one row is taken)."""


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A claimed outbox row, without its payload (read separately, within BATCH_MAX_BYTES)."""

    id: int
    job_name: str
    queue: str | None
    job_id: str | None
    run_at: dt.datetime | None
    priority: int | None
    payload_bytes: int

    @property
    def dispatch_id(self) -> str:
        return self.job_id or f"{keys.OUTBOX_JOB_PREFIX}{self.id}"


def within_budget(rows: list[ClaimedRow]) -> list[ClaimedRow]:
    """The leading rows whose payloads fit BATCH_MAX_BYTES together (at least one)."""
    total = 0
    for n, row in enumerate(rows):
        total += row.payload_bytes if row.payload_bytes <= MAX_PAYLOAD_BYTES else 0
        if n and total > BATCH_MAX_BYTES:
            return rows[:n]
    return rows
