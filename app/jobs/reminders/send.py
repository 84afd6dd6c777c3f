"""Send one reminder: an email (with the event's .ics) and an SMS to each participant.

Every message has its own idempotency key (`reminder:<id>:<channel>:<address>`), so a job
re-run after a crash or a retry sends only what did not go out before.

A message refused for good (a bad address, a 5xx at RCPT) concerns that recipient alone: the
ledger records it FAILED with its reason, the others still go out, and the reminder is SENT if
any did, else FAILED with each refusal's reason. Any other failure retries the reminder.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import Field

from app.calendar.when import When, describe, zone
from app.errors import JobSkipped, NotFound, PermanentError
from app.jobs.resources import Job
from app.notify import Attachment, Delivery, Email, Sms
from app.notify.ics import Invite, build_ics
from app.notify.render import render
from app.queue.payload import Payload

_LOAD = """
SELECT r.id, r.kind, r.status, e.id AS event_id, e.title, e.description, e.location, e.meeting_url,
       e.start_at, e.end_at, e.time_zone, e.status AS event_status, e.organizer_email, e.organizer_name,
       e.participants, e.sequence, now() AS now
FROM event_reminders r JOIN scheduling_events e ON e.id = r.event_id
WHERE r.id = ANY($1::bigint[])
"""

MESSAGE_OUTCOMES = ("sent", "duplicate", "skipped", "failed")
"""The counts of a sent reminder's messages ("failed": refused for good)."""


class SendReminder(Payload):
    """The web app sends `{reminderId: string, eventId}`; the id is a number in a string."""

    reminder_id: int = Field(ge=1)
    event_id: str | None = None
    """Not needed (the reminder names its event); accepted because the web app sends it."""


@dataclass(frozen=True, slots=True)
class Participant:
    email: str | None
    name: str | None
    phone: str | None
    time_zone: str | None


async def send_reminder(job: Job, p: SendReminder) -> dict[str, Any]:
    row = (await load(job, [p.reminder_id])).get(p.reminder_id)
    outcome = await deliver(job, p.reminder_id, row)
    if outcome["status"] == "sent":
        await mark_sent(job, [p.reminder_id])
    return outcome


async def load(job: Job, reminder_ids: list[int]) -> dict[int, asyncpg.Record]:
    """The reminders with their events, in one query; missing ids are absent."""
    # The scan that queued them may not have committed yet: such rows still read PENDING, which
    # is as sendable as QUEUED (and our SENT mark waits for its commit).
    return {row["id"]: row for row in await job.res.db.fetch(_LOAD, reminder_ids)}


async def deliver(job: Job, reminder_id: int, row: asyncpg.Record | None) -> dict[str, Any]:
    """Send one reminder's messages: {"status": "sent", ...} (the caller marks it SENT, a batch at
    once); JobSkipped (marked SKIPPED) when there is nothing to send. Shared by `send_reminder`
    and the scan's batches (batch.py)."""
    if row is None:
        raise NotFound(f"reminder {reminder_id} does not exist")
    if row["status"] in ("SENT", "SKIPPED"):
        return {"status": f"already {row['status'].lower()}"}
    skip = _skip_reason(row)
    if skip:
        await _mark(job.res.db, reminder_id, "SKIPPED", skip_reason=skip)
        raise JobSkipped(skip)
    deliveries, refused = await _send_all(job, row)
    counts = Counter[str](d.status for d in deliveries)
    counts["failed"] = len(refused)
    if counts["sent"] + counts["duplicate"] == 0:
        if refused:
            raise refused[0] if len(refused) == 1 else PermanentError("; ".join(map(_reason, refused)))
        reasons = sorted({d.reason for d in deliveries if d.status == "skipped" and d.reason})
        reason = "; ".join(reasons) or "no participant to remind"
        await _mark(job.res.db, reminder_id, "SKIPPED", skip_reason=reason)
        raise JobSkipped(reason)
    if refused:  # the reasons are in the ledger, beside each address
        job.log.warning("reminder_messages_refused", reminder_id=reminder_id, failed=len(refused))
    return {"status": "sent", **{status: counts[status] for status in MESSAGE_OUTCOMES}}


async def mark_sent(job: Job, reminder_ids: list[int]) -> None:
    """SENT, once their messages went out. A crash before this mark only costs a re-run that finds
    every message already sent in the ledger (no second delivery) and marks them then."""
    await job.res.db.execute(
        "UPDATE event_reminders SET status = 'SENT', error = NULL, retry_count = $2, sent_at = now()"
        " WHERE id = ANY($1::bigint[])", reminder_ids, job.attempt - 1)


async def record_failure(job: Job, p: SendReminder, exc: BaseException) -> None:
    """Dead-lettered (its last attempt failed, or a permanent error): FAILED, with count and error."""
    await mark_failed(job, [p.reminder_id], exc)


async def mark_failed(job: Job, reminder_ids: list[int], exc: BaseException, *, keep_own: bool = False) -> None:
    """FAILED with the error and attempt count, for those of `reminder_ids` not sent or skipped;
    `keep_own`: a reminder that noted its own error (`note_errors`) keeps it."""
    error = "COALESCE(error, $2)" if keep_own else "$2"
    await job.res.db.execute(
        f"UPDATE event_reminders SET status = 'FAILED', error = {error}, retry_count = $3"
        " WHERE id = ANY($1::bigint[]) AND status IN ('PENDING', 'QUEUED')",
        reminder_ids, _reason(exc), job.attempt)


async def note_errors(job: Job, errors: dict[int, BaseException]) -> None:
    """Each reminder's own error of this attempt, on its row while it waits for the next one, so
    a batch that fails for good records each reminder's reason, not the batch's."""
    await job.res.db.execute(
        "UPDATE event_reminders r SET error = u.error FROM unnest($1::bigint[], $2::text[]) AS u(id, error)"
        " WHERE r.id = u.id AND r.status IN ('PENDING', 'QUEUED')",
        list(errors), [_reason(exc) for exc in errors.values()])


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _skip_reason(row: asyncpg.Record) -> str | None:
    if row["event_status"] == "CANCELLED":
        return "event cancelled"
    if row["kind"] != "follow_up" and row["start_at"] <= row["now"]:
        return "event already started"
    return None


def participants(raw: Any) -> list[Participant]:
    items = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return [Participant(i.get("email"), i.get("name"), i.get("phone"), i.get("timeZone")) for i in items]


async def _send_all(job: Job, row: asyncpg.Record) -> tuple[list[Delivery], list[PermanentError]]:
    """Each participant's email and SMS, one idempotency key per message: the deliveries, and
    the messages refused for good."""
    send = job.res.providers.notifier.send
    link = f"{job.res.settings.app_base_url.rstrip('/')}/events/{row['event_id']}"
    key = f"reminder:{row['id']}"
    people = participants(row["participants"])
    sends = []
    for person in people:
        when = describe(row["start_at"], row["now"], zone(person.time_zone, row["time_zone"]))
        if person.email:
            email = _email(row, person, when, link, people)
            sends.append(send(email, key=f"{key}:email:{person.email.lower()}", job_id=job.job_id))
        if person.phone:
            sms = _sms(row, person.phone, when, link)
            sends.append(send(sms, key=f"{key}:sms:{person.phone}", job_id=job.job_id))
    # Each message has its own key, so they go out side by side; the first failure that may pass
    # is raised once the others have settled (they are recorded as sent and skipped on the retry).
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    passing = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, PermanentError)]
    if passing:
        raise passing[0]
    return ([o for o in outcomes if isinstance(o, Delivery)], [o for o in outcomes if isinstance(o, PermanentError)])


def _email(row: asyncpg.Record, person: Participant, when: When, link: str, people: list[Participant]) -> Email:
    template = "follow_up" if row["kind"] == "follow_up" else "reminder"
    text, html = render(template, name=person.name, title=row["title"], when=when, location=row["location"],
                        meeting_url=row["meeting_url"], organizer=row["organizer_name"] or row["organizer_email"],
                        link=link)
    subject = (f"Follow-up: {row['title']}" if template == "follow_up"
               else f"Reminder: {row['title']} {when.relative}")
    attachments: tuple[Attachment, ...] = ()
    if template == "reminder":
        attachments = (Attachment("invite.ics", build_ics(_invite(row, people)), "text/calendar; method=REQUEST"),)
    return Email(to=person.email or "", to_name=person.name, subject=subject, text=text, html=html,
                 attachments=attachments)


def _sms(row: asyncpg.Record, phone: str, when: When, link: str) -> Sms:
    where = f" {row['meeting_url']}" if row["meeting_url"] else (f" at {row['location']}" if row["location"] else "")
    body = f"Reminder: {row['title']} {when.relative}, {when.date} {when.time} {when.zone}.{where}"
    return Sms(to=phone, body=body, link=link)


def _invite(row: asyncpg.Record, people: list[Participant]) -> Invite:
    return Invite(
        event_id=row["event_id"], title=row["title"], start=row["start_at"], end=row["end_at"],
        time_zone=row["time_zone"], organizer_email=row["organizer_email"], organizer_name=row["organizer_name"],
        attendees=tuple((p.email, p.name) for p in people if p.email), location=row["location"],
        meeting_url=row["meeting_url"], description=row["description"], sequence=row["sequence"],
    )


async def _mark(db: asyncpg.Pool, reminder_id: int, status: str, *, skip_reason: str) -> None:
    await db.execute("UPDATE event_reminders SET status = $2, skip_reason = $3, error = NULL WHERE id = $1",
                     reminder_id, status, skip_reason)

