"""The scheduling agent's task rows: read one as a typed value, and move it between statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from app.calendar.events import Db
from app.errors import NotFound

_LOAD = """
SELECT t.id, t.org_id, t.user_id, t.status, t.event_id, t.alternatives, t.entities, t.task_type,
       t.retry_count, t.failed_step, t.failed_payload,
       COALESCE(t.message, i.body, '') AS message, COALESCE(t.subject, i.subject) AS subject,
       COALESCE(t.channel, i.channel) AS channel,
       COALESCE(t.sender_email, CASE WHEN i.channel = 'email' THEN i.sender END) AS sender_email,
       COALESCE(t.sender_phone, CASE WHEN i.channel = 'sms' THEN i.sender END) AS sender_phone,
       t.webhook_url
FROM scheduling_agent_tasks t LEFT JOIN inbox_items i ON i.id = t.inbox_item_id
WHERE t.id = $1
"""


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    org_id: str
    user_id: str | None
    status: str
    message: str
    subject: str | None
    channel: str | None
    sender_email: str | None
    sender_phone: str | None
    webhook_url: str | None
    event_id: str | None
    alternatives: list[dict[str, str]]
    task_type: str | None
    retry_count: int
    failed_step: str | None
    failed_payload: dict[str, Any] | None


async def load_task(db: Db, task_id: str, user_id: str) -> Task:
    """The task, or NotFound (also when it belongs to another user)."""
    row = await db.fetchrow(_LOAD, task_id)
    if row is None or (row["user_id"] is not None and row["user_id"] != user_id):
        raise NotFound(f"scheduling task {task_id} of user {user_id} does not exist")
    return _task(row)


def _task(row: asyncpg.Record) -> Task:
    return Task(
        id=row["id"], org_id=row["org_id"], user_id=row["user_id"], status=row["status"],
        message=row["message"], subject=row["subject"], channel=row["channel"], sender_email=row["sender_email"],
        sender_phone=row["sender_phone"], webhook_url=row["webhook_url"], event_id=row["event_id"],
        alternatives=list(row["alternatives"] or []), task_type=row["task_type"], retry_count=row["retry_count"],
        failed_step=row["failed_step"], failed_payload=row["failed_payload"],
    )


async def update_task(db: Db, task_id: str, status: str, **columns: Any) -> None:
    """Set the status and the given columns (names are ours, never input)."""
    names = sorted(columns)
    sets = "".join(f", {name} = ${i}" for i, name in enumerate(names, start=3))
    await db.execute(f"UPDATE scheduling_agent_tasks SET status = $2, updated_at = now(){sets} WHERE id = $1",
                     task_id, status, *(columns[n] for n in names))
