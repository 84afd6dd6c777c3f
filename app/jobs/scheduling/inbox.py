"""process_inbox: classify a task's message, then enqueue its next step.

Below AGENT_MIN_CONFIDENCE the task goes NEEDS_REVIEW and nothing is scheduled. A meeting
request without a date and time gets a clarification; availability questions are answered
here with the free slots of the asked day; other requests stay CLASSIFIED for the web app.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from app.calendar.availability import Interval, People, busy_events, free_slots
from app.calendar.preferences import Preferences, load_preferences
from app.calendar.when import zone
from app.jobs.resources import Job
from app.jobs.scheduling.classifier import Classification
from app.jobs.scheduling.payloads import CancelMeeting, ProcessInbox, RescheduleMeeting, ScheduleMeeting, SchedulingData
from app.jobs.scheduling.respond import advance, reply
from app.jobs.scheduling.tasks import Task, load_task, update_task
from app.jobs.scheduling.understand import DEFAULT_DURATION_MIN, classify, meeting_window
from app.queue.enqueue import JobRequest

log = structlog.get_logger(__name__)


async def process_inbox(job: Job, p: ProcessInbox) -> dict[str, Any]:
    db, settings = job.res.db, job.res.settings
    task = await load_task(db, p.task_id, p.user_id)
    prefs = await load_preferences(db, p.user_id, default_zone=settings.scheduling.time_zone)
    now = dt.datetime.now(dt.UTC)
    text = "\n".join(filter(None, [task.subject, task.message])).replace("\x00", " ")
    c, method = await classify(job.res.providers.openai, text, now=now, time_zone=prefs.hours.time_zone,
                               attempts=settings.model_json_attempts)
    await update_task(db, task.id, "PROCESSING", task_type=c.type, priority=c.priority, confidence=c.confidence,
                      classification_method=method, entities=c.entities.model_dump(by_alias=True))
    log.info("inbox_classified", task_id=task.id, type=c.type, confidence=c.confidence, method=method)
    result = {"taskId": task.id, "type": c.type, "confidence": c.confidence, "priority": c.priority,
              "method": method, "entities": c.entities.model_dump(by_alias=True)}
    if c.confidence < settings.agent_min_confidence:
        await update_task(db, task.id, "NEEDS_REVIEW")
        return {**result, "status": "NEEDS_REVIEW"}
    status = await _next_step(job, task, p.user_id, c, prefs, now)
    return {**result, "status": status}


async def _next_step(job: Job, task: Task, user_id: str, c: Classification, prefs: Preferences,
                     now: dt.datetime) -> str:
    """Enqueue what the request needs; the task's status meanwhile."""
    step = await _meeting_step(job, task, user_id, c, meeting_window(c, prefs.hours.time_zone), now)
    if step is not None:
        await advance(job, task.id, "PROCESSING", [step])
        return "PROCESSING"
    if c.type == "CHECK_AVAILABILITY":
        return await _answer_availability(job, task, user_id, c, prefs, now)
    if c.type in ("SCHEDULE_MEETING", "RESCHEDULE_MEETING", "CANCEL_MEETING"):
        await advance(job, task.id, "AWAITING_INPUT", [reply(task, user_id, "clarification")])
        return "AWAITING_INPUT"
    await update_task(job.res.db, task.id, "CLASSIFIED")
    return "CLASSIFIED"


async def _meeting_step(job: Job, task: Task, user_id: str, c: Classification, window: Interval | None,
                        now: dt.datetime) -> JobRequest | None:
    """The meeting job the request asks for, when it says enough to run one."""
    if c.type == "SCHEDULE_MEETING" and window is not None:
        data = SchedulingData(title=_title(c), start_time=window.start, end_time=window.end,
                              participants=c.entities.participants, location=c.entities.location)
        return JobRequest.of(ScheduleMeeting(task_id=task.id, user_id=user_id, scheduling_data=data),
                             job_id=f"schedule_meeting:{task.id}")
    if c.type not in ("RESCHEDULE_MEETING", "CANCEL_MEETING"):
        return None
    event_id = c.entities.event_id or await _find_event(job, user_id, c, now)
    if event_id and c.type == "CANCEL_MEETING":
        return JobRequest.of(CancelMeeting(task_id=task.id, user_id=user_id, event_id=event_id),
                             job_id=f"cancel_meeting:{task.id}")
    if event_id and window is not None:
        return JobRequest.of(RescheduleMeeting(task_id=task.id, user_id=user_id, event_id=event_id,
                                               start_time=window.start, end_time=window.end),
                             job_id=f"reschedule_meeting:{task.id}")
    return None


def _title(c: Classification) -> str:
    if c.entities.subject:
        return c.entities.subject
    if c.entities.participants:
        return "Meeting with " + ", ".join(c.entities.participants[:3])
    return "Meeting"


async def _find_event(job: Job, user_id: str, c: Classification, now: dt.datetime) -> str | None:
    """The user's next SCHEDULED event the message seems to mean (same participant, or its date
    when cancelling); None when there is none."""
    emails = c.entities.participants
    rows = await job.res.db.fetch(
        "SELECT id, start_at, participants FROM scheduling_events WHERE user_id = $1 AND status = 'SCHEDULED'"
        " AND end_at > $2 ORDER BY start_at LIMIT 50", user_id, now)
    for row in rows:
        people = {str(p.get("email", "")).lower() for p in row["participants"] or [] if isinstance(p, dict)}
        if emails and not people & set(emails):
            continue
        if c.type == "CANCEL_MEETING" and c.entities.date and row["start_at"].date().isoformat() != c.entities.date:
            continue
        return str(row["id"])
    return None


async def _answer_availability(job: Job, task: Task, user_id: str, c: Classification, prefs: Preferences,
                               now: dt.datetime) -> str:
    """Free slots from the asked day (or today) on: stored on the task and sent as alternatives."""
    tz = zone(prefs.hours.time_zone, "UTC")
    day = dt.date.fromisoformat(c.entities.date) if c.entities.date else now.astimezone(tz).date()
    start = dt.datetime.combine(day, prefs.hours.start, tzinfo=tz).astimezone(dt.UTC)
    wanted = Interval(start, start + dt.timedelta(minutes=c.entities.duration or DEFAULT_DURATION_MIN))
    people = People.of([user_id], [prefs.email])
    busy = await busy_events(job.res.db, people, Interval(start - dt.timedelta(days=1), start + dt.timedelta(days=9)))
    slots = free_slots(wanted, [b.interval for b in busy], prefs.hours, now=now)
    alternatives = [{"startTime": s.start.isoformat(), "endTime": s.end.isoformat()} for s in slots]
    await advance(job, task.id, "AWAITING_INPUT", [reply(task, user_id, "alternatives")], alternatives=alternatives)
    return "AWAITING_INPUT"
