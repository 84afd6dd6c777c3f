"""schedule_meeting, reschedule_meeting and cancel_meeting: book, move or cancel an event
without double booking anyone, and answer on the task's channel.

On a conflict the task goes AWAITING_INPUT with the five nearest free slots (same duration,
within 7 days, inside the user's working hours) and an `alternatives` reply; otherwise the
event and its reminders are written and a `confirmation` goes out (participants get the
invitation). Booking is serialized per person in PostgreSQL (app/calendar/booking.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from app.calendar.availability import Interval, People, busy_events, free_slots
from app.calendar.booking import Booked, book, rebook
from app.calendar.events import NewEvent, cancel_event
from app.calendar.preferences import Preferences, load_preferences, user_ids_for
from app.calendar.when import zone
from app.errors import NotFound
from app.jobs.resources import Job
from app.jobs.scheduling.payloads import CancelMeeting, RescheduleMeeting, ScheduleMeeting
from app.jobs.scheduling.respond import advance, reply
from app.jobs.scheduling.tasks import Task, load_task

log = structlog.get_logger(__name__)


def _aware(value: dt.datetime, tz_name: str) -> dt.datetime:
    """A time without an offset is the user's wall clock."""
    return value if value.tzinfo else value.replace(tzinfo=zone(tz_name, "UTC"))


async def _people(job: Job, user_id: str, prefs: Preferences, emails: list[str]) -> People:
    return People.of([user_id, *await user_ids_for(job.res.db, emails)], [*emails, prefs.email])


async def schedule_meeting(job: Job, p: ScheduleMeeting) -> dict[str, Any]:
    db = job.res.db
    task = await load_task(db, p.task_id, p.user_id)
    prefs = await load_preferences(db, p.user_id, default_zone=job.res.settings.scheduling.time_zone)
    data = p.scheduling_data
    tz = prefs.hours.time_zone
    wanted = Interval(_aware(data.start_time, tz).astimezone(dt.UTC), _aware(data.end_time, tz).astimezone(dt.UTC))
    emails = list(dict.fromkeys(e.strip().lower() for e in data.participants))
    event = NewEvent(
        id=f"evt_{task.id}", org_id=task.org_id, title=data.title, start_at=wanted.start, end_at=wanted.end,
        time_zone=tz, participants=tuple({"email": e} for e in emails), organizer_email=prefs.email,
        location=data.location, description=data.description, user_id=p.user_id, agent_task_id=task.id)
    people = await _people(job, p.user_id, prefs, emails)
    outcome = await book(db, event, people, check_conflicts=p.check_conflicts)
    if isinstance(outcome, Booked):
        await advance(job, task.id, "SCHEDULED", [reply(task, p.user_id, "confirmation")],
                      event_id=outcome.event_id, alternatives=None)
        log.info("meeting_scheduled", task_id=task.id, event_id=outcome.event_id, created=outcome.created)
        return {"taskId": task.id, "status": "SCHEDULED", "eventId": outcome.event_id}
    alternatives = await _offer(job, task, p.user_id, wanted, people, prefs)
    return {"taskId": task.id, "status": "AWAITING_INPUT", "conflicts": [c.id for c in outcome.conflicts],
            "alternatives": alternatives}


async def _offer(job: Job, task: Task, user_id: str, wanted: Interval, people: People,
                 prefs: Preferences) -> list[dict[str, str]]:
    """Store the nearest free slots on the task and send them as alternatives."""
    search = Interval(wanted.start - dt.timedelta(days=1), wanted.start + dt.timedelta(days=9))
    busy = [b.interval for b in await busy_events(job.res.db, people, search)]
    slots = free_slots(wanted, busy, prefs.hours, now=dt.datetime.now(dt.UTC))
    alternatives = [{"startTime": s.start.isoformat(), "endTime": s.end.isoformat()} for s in slots]
    await advance(job, task.id, "AWAITING_INPUT", [reply(task, user_id, "alternatives")], alternatives=alternatives)
    log.info("meeting_conflict", task_id=task.id, alternatives=len(alternatives))
    return alternatives


async def _event_of(job: Job, event_id: str, user_id: str) -> list[str]:
    """The participants' emails of the user's event; NotFound if it is not theirs."""
    row = await job.res.db.fetchrow(
        "SELECT participants FROM scheduling_events WHERE id = $1 AND user_id = $2", event_id, user_id)
    if row is None:
        raise NotFound(f"event {event_id} of user {user_id} does not exist")
    return [str(x["email"]).lower() for x in row["participants"] or [] if isinstance(x, dict) and x.get("email")]


async def reschedule_meeting(job: Job, p: RescheduleMeeting) -> dict[str, Any]:
    db = job.res.db
    task = await load_task(db, p.task_id, p.user_id)
    prefs = await load_preferences(db, p.user_id, default_zone=job.res.settings.scheduling.time_zone)
    tz = prefs.hours.time_zone
    wanted = Interval(_aware(p.start_time, tz).astimezone(dt.UTC), _aware(p.end_time, tz).astimezone(dt.UTC))
    people = await _people(job, p.user_id, prefs, await _event_of(job, p.event_id, p.user_id))
    outcome = await rebook(db, p.event_id, wanted, people)
    if isinstance(outcome, Booked):
        await advance(job, task.id, "RESCHEDULED", [reply(task, p.user_id, "confirmation")], event_id=p.event_id)
        return {"taskId": task.id, "status": "RESCHEDULED", "eventId": p.event_id}
    alternatives = await _offer(job, task, p.user_id, wanted, people, prefs)
    return {"taskId": task.id, "status": "AWAITING_INPUT", "alternatives": alternatives}


async def cancel_meeting(job: Job, p: CancelMeeting) -> dict[str, Any]:
    db = job.res.db
    task = await load_task(db, p.task_id, p.user_id)
    await _event_of(job, p.event_id, p.user_id)
    skipped = await cancel_event(db, p.event_id)
    await advance(job, task.id, "CANCELLED", [reply(task, p.user_id, "cancellation")], event_id=p.event_id)
    return {"taskId": task.id, "status": "CANCELLED", "eventId": p.event_id, "remindersSkipped": skipped}
