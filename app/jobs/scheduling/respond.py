"""send_response: the agent's reply on the channel the person used (email, SMS, chat, webhook).

Everything goes through `Notifier.send()` with a key made of the task, the reply type, the
channel, the recipient and a digest of what is said, so a retried or repeated job never sends
the same reply twice. Confirmations and cancellations also email each participant (with the
.ics invitation for confirmations). A channel without its settings, or a reply without a
recipient address, finishes `skipped` with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, cast

from app.calendar.availability import Interval
from app.calendar.preferences import Preferences, load_preferences
from app.errors import JobSkipped
from app.jobs.resources import Job
from app.jobs.scheduling.payloads import Channel, ResponseType, SendResponse
from app.jobs.scheduling.replies import (
    WEBHOOK_EVENTS,
    EventView,
    Facts,
    chat_data,
    html_body,
    invite,
    sms_body,
    subject,
    text_body,
    webhook_data,
)
from app.jobs.scheduling.tasks import Task, load_task, update_task
from app.notify import Attachment, Chat, Delivery, Email, Message, Sms, Webhook
from app.notify.ics import build_ics
from app.queue import outbox
from app.queue.enqueue import JobRequest


def reply(task: Task, user_id: str, response_type: ResponseType) -> JobRequest:
    """The reply on the task's channel (chat when it came without one), as a follow-up to queue."""
    # cast: the database's CHECK allows exactly these channels; anything else means "came without one".
    channel = cast(Channel, task.channel) if task.channel in ("email", "sms", "chat", "webhook") else "chat"
    return JobRequest.of(SendResponse(task_id=task.id, user_id=user_id, response_type=response_type, channel=channel))


async def advance(job: Job, task_id: str, status: str, follow_ups: list[JobRequest], **columns: Any) -> None:
    """Store the task's new status and queue what follows from it in one transaction: the outbox
    relay enqueues the follow-ups once it commits, so a crash in between loses neither."""
    async with job.res.db.acquire() as conn, conn.transaction():
        await update_task(conn, task_id, status, **columns)
        await outbox.put(conn, job.res.registry, follow_ups)


async def send_response(job: Job, p: SendResponse) -> dict[str, Any]:
    db = job.res.db
    task = await load_task(db, p.task_id, p.user_id)
    prefs = await load_preferences(db, p.user_id, default_zone=job.res.settings.scheduling.time_zone)
    facts = await _facts(job, task, p, prefs)
    message = _message(p, task, prefs, facts)
    recipient_hash = hashlib.sha256(message.recipient.encode()).hexdigest()[:12]
    key = f"agent:{task.id}:{p.response_type}:{p.channel}:{recipient_hash}:{facts.digest()}"
    send = job.res.providers.notifier.send
    delivery = await send(message, key=key, job_id=job.job_id)
    invites = await _invite_participants(job, facts, skip=message.recipient)
    if delivery.status == "skipped":
        raise JobSkipped(delivery.reason or f"{p.channel} is not configured")
    return {"taskId": task.id, "responseType": p.response_type, "channel": p.channel, "status": delivery.status,
            "notificationId": delivery.notification_id, "invitations": [d.status for d in invites]}


async def _facts(job: Job, task: Task, p: SendResponse, prefs: Preferences) -> Facts:
    metadata = p.metadata or {}
    event = await _event(job, task.event_id) if task.event_id else None
    alternatives = tuple(Interval(dt.datetime.fromisoformat(a["startTime"]), dt.datetime.fromisoformat(a["endTime"]))
                         for a in task.alternatives)
    link = f"{job.res.settings.app_base_url.rstrip('/')}/scheduling/tasks/{task.id}"
    note = metadata.get("message")
    return Facts(response_type=p.response_type, task_id=task.id, time_zone=prefs.hours.time_zone, link=link,
                 event=event if p.response_type in ("confirmation", "cancellation") else None,
                 alternatives=alternatives if p.response_type == "alternatives" else (),
                 note=str(note)[:1000] if note else None,
                 extra={k: v for k, v in metadata.items() if k != "message"})


async def _event(job: Job, event_id: str) -> EventView | None:
    row = await job.res.db.fetchrow("SELECT * FROM scheduling_events WHERE id = $1", event_id)
    if row is None:
        return None
    people = tuple(str(x["email"]) for x in row["participants"] or [] if isinstance(x, dict) and x.get("email"))
    return EventView(id=row["id"], title=row["title"], start=row["start_at"], end=row["end_at"],
                     time_zone=row["time_zone"], location=row["location"], description=row["description"],
                     organizer_email=row["organizer_email"], participants=people, sequence=row["sequence"])


def _message(p: SendResponse, task: Task, prefs: Preferences, f: Facts) -> Message:
    """The reply for the payload's channel, to the payload's recipient, else the task's, else the user's."""
    if p.channel == "chat":
        return Chat(user_id=p.user_id, org_id=task.org_id, body=" ".join(text_body(f).split("\n")[:1]),
                    data=chat_data(f))
    if p.channel == "webhook":
        url = p.webhook_url or task.webhook_url
        if not url:
            raise JobSkipped(f"no webhook URL for task {task.id}")
        return Webhook(url=url, event=WEBHOOK_EVENTS[p.response_type], data=webhook_data(f))
    if p.channel == "sms":
        phone = p.recipient_phone or task.sender_phone or prefs.phone
        if not phone:
            raise JobSkipped(f"no phone number for task {task.id}")
        return Sms(to=phone, body=sms_body(f), link=f.link)
    to = p.recipient_email or task.sender_email or prefs.email
    if not to:
        raise JobSkipped(f"no email address for task {task.id}")
    attachments: tuple[Attachment, ...] = ()
    if f.response_type == "confirmation" and f.event:
        attachments = (Attachment("invite.ics", build_ics(invite(f)), "text/calendar; method=REQUEST"),)
    return Email(to=to, subject=subject(f), text=text_body(f), html=html_body(f), attachments=attachments)


async def _invite_participants(job: Job, f: Facts, *, skip: str) -> list[Delivery]:
    """Each participant's copy of a confirmation (with the invitation) or cancellation."""
    if f.event is None:
        return []
    deliveries = []
    for email in f.event.participants:
        if email.lower() == skip.lower():
            continue
        attachments: tuple[Attachment, ...] = ()
        if f.response_type == "confirmation":
            attachments = (Attachment("invite.ics", build_ics(invite(f)), "text/calendar; method=REQUEST"),)
        message = Email(to=email, subject=subject(f), text=text_body(f), html=html_body(f), attachments=attachments)
        key = f"agent:{f.task_id}:{f.response_type}:invite:{email.lower()}:{f.digest()}"
        deliveries.append(await job.res.providers.notifier.send(message, key=key, job_id=job.job_id))
    return deliveries
