"""Event reminders: created with the event, claimed by the scan, sent once by email (.ics) and SMS."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar

from app.calendar.events import cancel_event
from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.support.calendar import due_event
from tests.support.jobs import result_of
from tests.support.worker import WorkerProcess, in_process_worker, subprocess_env

QUEUE = "scheduling-reminders"
BERLIN = ZoneInfo("Europe/Berlin")


def ics_of(message: EmailMessage) -> Calendar:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in message.iter_attachments()]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return Calendar.from_ical(payload)


async def test_a_due_reminder_arrives_once_with_a_valid_ics_in_local_time(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink, twilio: TwilioFake) -> None:
    """The scan queues the due reminder; the participant gets one email whose .ics parses back
    with the event's UID and times, one SMS, both in their own time zone; scanning and sending
    again sends nothing more."""
    start_in = dt.timedelta(hours=2) - dt.timedelta(minutes=1)
    ids = await due_event(res, "ev-1", starts_in=start_in, time_zone="America/New_York",
                          meeting_url="https://meet.test/x", organizer_email="olga@example.com", participants=[
                              {"email": "ana@example.com", "name": "Ana", "phone": "+14155550100",
                               "timeZone": "Europe/Berlin"}])
    assert set(ids) == {"2h"}
    settings = make_settings(**smtp_sink.env(), **twilio.env())
    async with in_process_worker(settings, [QUEUE]):
        scan = await result_of(res, await res.enqueuer.enqueue("scan_reminders", {}), QUEUE)
        assert scan == {"scanned": 1, "queued": 1, "skipped": 0, "errors": 0}
        await smtp_sink.wait_for(lambda s: len(s.messages) == 1)
        first = await res.enqueuer.job(f"reminders:{ids['2h']}", QUEUE).result(timeout_s=20, poll_delay=0.02)
        sent = await result_of(res, await _enqueued_again(res, ids["2h"]), QUEUE)
        again = await result_of(res, await res.enqueuer.enqueue("scan_reminders", {}), QUEUE)
    assert first == {"reminders": {"sent": 1}, "messages": {"sent": 2, "duplicate": 0, "skipped": 0, "failed": 0}}
    assert sent == {"status": "already sent"}
    assert again["scanned"] == 0
    [message] = smtp_sink.messages
    start = await res.db.fetchval("SELECT start_at FROM scheduling_events WHERE id = 'ev-1'")
    local = start.astimezone(BERLIN)
    assert message["To"] == "Ana <ana@example.com>"
    assert message["Subject"] == "Reminder: Quarterly review in 2 hours"
    body = message.get_body(("plain",))
    assert body is not None
    assert f"at {local:%H:%M} ({local.tzname()})" in body.get_content()
    event = ics_of(message).walk("VEVENT")[0]
    assert str(event["uid"]) == "ev-1@workhorse"
    assert event.decoded("dtstart") == start and event.decoded("dtend") == start + dt.timedelta(hours=1)
    assert str(event.decoded("dtstart").tzinfo) == "America/New_York"
    assert [m["to"] for m in twilio.messages] == ["+14155550100"]
    assert f"{local:%H:%M}" in twilio.messages[0]["body"]
    row = await res.db.fetchrow("SELECT status, sent_at FROM event_reminders WHERE id = $1", ids["2h"])
    assert row is not None
    assert row["status"] == "SENT" and row["sent_at"] is not None


async def _enqueued_again(res: Resources, reminder_id: int) -> Any:
    """A second send of the same reminder (as a retried or duplicated job would be)."""
    return await res.enqueuer.enqueue("send_reminder", {"reminderId": reminder_id}, job_id=f"again:{reminder_id}")


async def test_reminders_of_cancelled_or_started_events_are_skipped_with_the_reason(
        settings: Settings, res: Resources, smtp_sink: SmtpSink) -> None:
    """A cancelled event's pending reminders are skipped at once; a 2 h reminder that only came
    due after its event started is skipped by the scan; neither sends anything."""
    cancelled = await due_event(res, "ev-cancelled", starts_in=dt.timedelta(hours=1),
                                participants=[{"email": "a@example.com"}])
    assert await cancel_event(res.db, "ev-cancelled") == 1
    started = await due_event(res, "ev-started", starts_in=-dt.timedelta(minutes=5),
                              participants=[{"email": "b@example.com"}])
    async with in_process_worker(settings, [QUEUE]):
        scan = await result_of(res, await res.enqueuer.enqueue("scan_reminders", {}), QUEUE)
    assert scan == {"scanned": 1, "queued": 0, "skipped": 1, "errors": 0}
    rows = await res.db.fetch("SELECT id, status, skip_reason FROM event_reminders ORDER BY id")
    assert [(r["status"], r["skip_reason"]) for r in rows] == [
        ("SKIPPED", "event cancelled"), ("SKIPPED", "event already started")]
    assert [r["id"] for r in rows] == [cancelled["2h"], started["2h"]]
    assert smtp_sink.messages == []


async def test_two_processes_scanning_at_once_send_each_reminder_exactly_once(
        make_env: Callable[..., dict[str, str]], res: Resources, smtp_sink: SmtpSink) -> None:
    """Two worker processes run overlapping scans in small batches over 120 due reminders:
    SKIP LOCKED splits the rows between them, and every participant gets exactly one email."""
    count = 120
    for n in range(count):
        await due_event(res, f"ev-{n}", starts_in=dt.timedelta(minutes=90),
                        participants=[{"email": f"p{n}@example.com"}])
    env = subprocess_env(make_env(**smtp_sink.env()))
    workers = [WorkerProcess({**env, "HEALTH_PORT": "0"}, ("--queues", QUEUE)) for _ in range(2)]
    for w in workers:
        await w.start()
    try:
        await asyncio.gather(*(w.wait_ready() for w in workers))
        scans = [await res.enqueuer.enqueue("scan_reminders", {"batchSize": 5}) for _ in range(4)]
        results = [await result_of(res, s, QUEUE, timeout_s=60) for s in scans]
        await smtp_sink.wait_for(lambda s: len(s.messages) >= count, timeout_s=60)
    finally:
        for w in workers:
            await w.stop()
    assert sum(r["scanned"] for r in results) == count
    recipients = sorted(str(m["To"]) for m in smtp_sink.messages)
    assert recipients == sorted({f"p{n}@example.com" for n in range(count)})
    assert await res.db.fetchval("SELECT count(*) FROM event_reminders WHERE status = 'SENT'") == count


async def test_a_reminder_that_fails_for_good_is_marked_failed_with_its_count_and_error(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """When the last attempt fails (here the SMTP server is down and one attempt is allowed), the
    reminder ends FAILED with its retry count and the error, and the job is dead-lettered."""
    ids = await due_event(res, "ev-fail", starts_in=dt.timedelta(minutes=90),
                          participants=[{"email": "c@example.com"}])
    await smtp_sink.stop()
    settings = make_settings(**smtp_sink.env(), scheduling_reminders_attempts=1)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("send_reminder", {"reminderId": ids["2h"]})
        async with asyncio.timeout(15):
            while not await res.dlq.list():
                await asyncio.sleep(0.05)
    row = await res.db.fetchrow("SELECT status, retry_count, error FROM event_reminders WHERE id = $1", ids["2h"])
    assert row is not None
    assert row["status"] == "FAILED" and row["retry_count"] == 1
    assert "SMTP unavailable" in row["error"]


async def test_the_scan_sends_due_reminders_in_batches_each_once(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """Seven due reminders with REMINDER_BATCH_SIZE=3 go out as three send_reminders jobs, each
    reminder once; a batch enqueued again sends nothing more."""
    ids = [(await due_event(res, f"ev-b{n}", starts_in=dt.timedelta(minutes=90),
                            participants=[{"email": f"b{n}@example.com"}]))["2h"] for n in range(7)]
    settings = make_settings(**smtp_sink.env(), reminder_batch_size=3)
    async with in_process_worker(settings, [QUEUE]):
        scan = await result_of(res, await res.enqueuer.enqueue("scan_reminders", {}), QUEUE)
        await smtp_sink.wait_for(lambda s: len(s.messages) == 7)
        batches = [await res.enqueuer.job(job_id, QUEUE).result(timeout_s=20)
                   for job_id in ("reminders:%d-%d:3" % (ids[0], ids[2]), "reminders:%d-%d:3" % (ids[3], ids[5]),
                                  "reminders:%d" % ids[6])]
        again = await result_of(res, await res.enqueuer.enqueue("send_reminders", {"reminderIds": ids[:3]},
                                                                job_id="again"), QUEUE)
    assert scan["queued"] == 7
    assert [b["reminders"] for b in batches] == [{"sent": 3}, {"sent": 3}, {"sent": 1}]
    assert again["reminders"] == {"already sent": 3} and len(smtp_sink.messages) == 7
    assert await res.db.fetchval("SELECT count(*) FROM event_reminders WHERE status = 'SENT'") == 7


async def test_a_batch_that_fails_for_good_marks_its_unsent_reminders_failed(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """SMTP down and one attempt allowed: the batch is dead-lettered and each of its reminders
    ends FAILED with the error."""
    ids = [(await due_event(res, f"ev-f{n}", starts_in=dt.timedelta(minutes=90),
                            participants=[{"email": f"f{n}@example.com"}]))["2h"] for n in range(2)]
    await smtp_sink.stop()
    settings = make_settings(**smtp_sink.env(), scheduling_reminders_attempts=1)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("send_reminders", {"reminderIds": ids})
        async with asyncio.timeout(15):
            while not await res.dlq.list():
                await asyncio.sleep(0.05)
    rows = await res.db.fetch("SELECT status, error FROM event_reminders WHERE id = ANY($1::bigint[])", ids)
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    assert all("SMTP unavailable" in r["error"] for r in rows)
