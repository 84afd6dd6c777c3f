"""The scheduling agent's rows as the tests need them: tasks, a meeting already booked, a date
with room around it, and waits for a task's status and for chat messages."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.calendar.events import NewEvent, create_event
from app.jobs.resources import Resources
from tests.support.waits import until

QUEUE = "scheduling-agent"


def meeting_day() -> dt.date:
    """A Wednesday 8 to 14 days ahead: in the future, and its week has room for alternatives."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=8)
    return day + dt.timedelta(days=(2 - day.weekday()) % 7)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """That time of `day` in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


async def task(res: Resources, task_id: str, message: str = "", channel: str = "chat", **fields: Any) -> None:
    """A task of user_1 in org_1, as the web app inserts it (email, phone, webhook: where to reply)."""
    await res.db.execute(
        "INSERT INTO scheduling_agent_tasks (id, org_id, user_id, message, channel, sender_email, sender_phone,"
        " webhook_url) VALUES ($1, 'org_1', 'user_1', $2, $3, $4, $5, $6)", task_id, message, channel,
        fields.get("email"), fields.get("phone"), fields.get("webhook"))


async def status_is(res: Resources, task_id: str, *statuses: str) -> None:
    """Until the task has one of `statuses`."""
    async def check() -> bool:
        return await res.db.fetchval("SELECT status FROM scheduling_agent_tasks WHERE id = $1", task_id) in statuses
    await until(check, timeout_s=20)


async def chats(res: Resources, count: int) -> list[Any]:
    """The chat messages stored, once there are at least `count`, oldest first."""
    async def check() -> bool:
        return int(await res.db.fetchval("SELECT count(*) FROM chat_messages")) >= count
    await until(check, timeout_s=20)
    return list(await res.db.fetch("SELECT user_id, body, data FROM chat_messages ORDER BY id"))


async def booked(res: Resources, task_id: str, day: dt.date, **fields: Any) -> None:
    """A task whose meeting (with ana@example.com) is already booked."""
    await task(res, task_id, **fields)
    await create_event(res.db, NewEvent(id=f"evt_{task_id}", org_id="org_1", title="Kickoff", start_at=at(day, 14),
                                        end_at=at(day, 15), participants=({"email": "ana@example.com"},),
                                        user_id="user_1", agent_task_id=task_id))
    await res.db.execute("UPDATE scheduling_agent_tasks SET status = 'SCHEDULED', event_id = $2 WHERE id = $1",
                         task_id, f"evt_{task_id}")
