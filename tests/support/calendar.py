"""Calendar rows as the tests need them: an event whose reminder is due now."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.calendar.events import NewEvent, create_event
from app.jobs.resources import Resources


async def due_event(res: Resources, event_id: str, *, starts_in: dt.timedelta, **fields: Any) -> dict[str, int]:
    """An event whose 2 h reminder is due now (created as if three hours before the start)."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + starts_in
    event = NewEvent(id=event_id, org_id="org-1", title=fields.pop("title", "Quarterly review"), start_at=start,
                     end_at=start + dt.timedelta(hours=1), **fields)
    return await create_event(res.db, event, now=start - dt.timedelta(hours=3))
