"""The payloads of calendar sync: the web app's (runbook 4.4) and the cron fan-out's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.queue.payload import Payload

# Ids are our own text keys: printable, bounded (a NUL would be refused by PostgreSQL anyway).
_ID = r"^[^\x00-\x1f\x7f]+$"

SyncType = Literal["full", "incremental"]


class SyncCalendar(Payload):
    connection_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    user_id: str | None = Field(None, min_length=1, max_length=200, pattern=_ID)
    """The web app sends it; when given it must be the connection's user."""
    sync_type: SyncType = "incremental"
    full_sync: bool = False
    """The earlier form of syncType=full, still accepted."""
    org_id: str | None = Field(None, max_length=200)

    @property
    def full(self) -> bool:
        return self.full_sync or self.sync_type == "full"


class CalendarSyncFanout(Payload):
    sync_type: SyncType = "incremental"
    batch_size: int = Field(500, ge=1, le=5000)
