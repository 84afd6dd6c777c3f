"""The scheduling agent end to end through the real worker: a message becomes a meeting with
reminders, a conflict becomes five alternatives, two bookings of one slot never both succeed,
and every reply channel (SMTP sink, Twilio imitation, signed webhook, chat) delivers once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from app.config import Settings
from app.jobs.resources import Resources
from app.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.fakes.openai import FakeOpenAI
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.support.jobs import result_of
from tests.support.services import free_port
from tests.support.waits import until, wait_for_dead_letters
from tests.support.worker import in_process_worker

QUEUE = "scheduling-agent"
SECRET = "whsec-agent"


def meeting_day() -> dt.date:
    """A Wednesday 8 to 14 days ahead: in the future, and its week has room for alternatives."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=8)
    return day + dt.timedelta(days=(2 - day.weekday()) % 7)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


async def task(res: Resources, task_id: str, message: str = "", channel: str = "chat", **fields: Any) -> None:
    await res.db.execute(
        "INSERT INTO scheduling_agent_tasks (id, org_id, user_id, message, channel, sender_email, sender_phone,"
        " webhook_url) VALUES ($1, 'org_1', 'user_1', $2, $3, $4, $5, $6)", task_id, message, channel,
        fields.get("email"), fields.get("phone"), fields.get("webhook"))


async def status_is(res: Resources, task_id: str, *statuses: str) -> None:
    async def check() -> bool:
        return await res.db.fetchval("SELECT status FROM scheduling_agent_tasks WHERE id = $1", task_id) in statuses
    await until(check, timeout_s=20)


async def chats(res: Resources, count: int) -> list[Any]:
    async def check() -> bool:
        return int(await res.db.fetchval("SELECT count(*) FROM chat_messages")) >= count
    await until(check, timeout_s=20)
    return list(await res.db.fetch("SELECT user_id, body, data FROM chat_messages ORDER BY id"))


async def test_a_message_becomes_a_meeting_with_reminders_and_a_chat_confirmation(
        settings: Settings, res: Resources) -> None:
    """Offline (no model): the message is classified, the meeting booked with its 24 h and 2 h
    reminders, the task SCHEDULED and the confirmation stored as a chat message."""
    day = meeting_day()
    await task(res, "t1", f"can we meet on {day.isoformat()} at 2pm with Ana@example.com for an hour?")
    async with in_process_worker(settings, [QUEUE]):
        result = await result_of(res, await res.enqueuer.enqueue("process-inbox", {"taskId": "t1", "userId": "user_1"}),
                                 QUEUE)
        await status_is(res, "t1", "SCHEDULED")
        [chat] = await chats(res, 1)
    assert (result["type"], result["method"], result["entities"]["participants"]) == (
        "SCHEDULE_MEETING", "offline", ["ana@example.com"])
    event = await res.db.fetchrow("SELECT * FROM scheduling_events")
    assert event is not None
    assert (event["user_id"], event["start_at"], event["end_at"], event["participants"], event["source"]) == (
        "user_1", at(day, 14), at(day, 15), [{"email": "ana@example.com"}], "app")
    kinds = {r["kind"] for r in await res.db.fetch("SELECT kind FROM event_reminders WHERE status = 'PENDING'")}
    assert kinds == {"24h", "2h"}
    assert chat["data"]["type"] == "confirmation" and chat["data"]["event"]["id"] == event["id"]
    assert await res.db.fetchval("SELECT event_id FROM scheduling_agent_tasks") == event["id"]


async def test_a_conflict_offers_five_alternatives_as_chat_choices(settings: Settings, res: Resources) -> None:
    """Busy from a synced Google event of the user and from another user's meeting that lists the
    participant: the task waits for input with the five nearest free slots, sent as choices."""
    day = meeting_day()
    await res.db.execute(
        "INSERT INTO scheduling_events (id, org_id, title, start_at, end_at, user_id, source) VALUES"
        " ('g1', 'org_1', 'Dentist', $1, $2, 'user_1', 'google')", at(day, 13), at(day, 15))
    await res.db.execute(
        "INSERT INTO scheduling_events (id, org_id, title, start_at, end_at, user_id, participants) VALUES"
        " ('o1', 'org_1', 'Other', $1, $2, 'user_9', '[{\"email\": \"ana@example.com\"}]')",
        at(day, 14, 30), at(day, 16))
    await task(res, "t2")
    data = {"title": "Review", "startTime": at(day, 14).isoformat(), "endTime": at(day, 15).isoformat(),
            "participants": ["ana@example.com"]}
    async with in_process_worker(settings, [QUEUE]):
        result = await result_of(res, await res.enqueuer.enqueue(
            "schedule-meeting", {"taskId": "t2", "userId": "user_1", "schedulingData": data}), QUEUE)
        [chat] = await chats(res, 1)
    expected = [at(day, 12), at(day, 16), at(day, 11, 30), at(day, 11), at(day, 10, 30)]
    assert result["status"] == "AWAITING_INPUT" and sorted(result["conflicts"]) == ["g1", "o1"]
    assert [dt.datetime.fromisoformat(a["startTime"]) for a in result["alternatives"]] == expected
    choices = chat["data"]["choices"]
    assert [dt.datetime.fromisoformat(c["startTime"]) for c in choices[:5]] == expected
    assert choices[5]["action"] == "decline" and all(c["action"] == "accept_slot" for c in choices[:5])
    assert await res.db.fetchval("SELECT count(*) FROM scheduling_events WHERE agent_task_id = 't2'") == 0


async def test_two_bookings_of_one_slot_one_is_scheduled_the_other_gets_alternatives(
        settings: Settings, res: Resources) -> None:
    """Two concurrent schedule_meeting jobs for one person and one slot: PostgreSQL serializes
    them, so exactly one books and the other is offered alternatives."""
    day = meeting_day()
    data = {"title": "Slot", "startTime": at(day, 10).isoformat(), "endTime": at(day, 11).isoformat()}
    for n in range(3):
        await task(res, f"r{n}")
    async with in_process_worker(settings, [QUEUE]):
        from app.queue.enqueue import JobRequest

        queued = await res.enqueuer.enqueue_many([JobRequest("schedule_meeting", {
            "taskId": f"r{n}", "userId": "user_1", "schedulingData": data}) for n in range(3)])
        results = [await result_of(res, q, QUEUE) for q in queued]
    assert sorted(r["status"] for r in results) == ["AWAITING_INPUT", "AWAITING_INPUT", "SCHEDULED"]
    assert await res.db.fetchval("SELECT count(*) FROM scheduling_events WHERE status = 'SCHEDULED'") == 1


async def test_model_classification_is_used_and_low_confidence_needs_review(
        make_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """With a model: its confident answer is scheduled; an unsure one leaves the task NEEDS_REVIEW
    with nothing scheduled."""
    day = meeting_day()
    entities = {"date": day.isoformat(), "time": "09:30", "duration": 45, "participants": ["bo@example.com"],
                "subject": "Budget", "location": None, "eventId": None, "timeZone": None}
    fake_openai.script_chat(
        json.dumps({"type": "SCHEDULE_MEETING", "entities": entities, "priority": 2, "confidence": 0.93}),
        json.dumps({"type": "SCHEDULE_MEETING", "entities": entities, "priority": 2, "confidence": 0.5}))
    await task(res, "m1", "budget talk?")
    await task(res, "m2", "hmm")
    settings = make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("process_inbox", {"taskId": "m1", "userId": "user_1"})
        await status_is(res, "m1", "SCHEDULED")
        low = await result_of(res, await res.enqueuer.enqueue("classify_inbox_item", {"taskId": "m2",
                                                                                      "userId": "user_1"}), QUEUE)
    event = await res.db.fetchrow("SELECT title, start_at, end_at FROM scheduling_events")
    assert event is not None and tuple(event) == ("Budget", at(day, 9, 30), at(day, 10, 15))
    assert low["status"] == "NEEDS_REVIEW" and low["method"] == "ai"
    assert await res.db.fetchval("SELECT count(*) FROM scheduling_events") == 1


async def booked(res: Resources, task_id: str, day: dt.date, **fields: Any) -> None:
    """A task whose meeting (with ana@example.com) is already booked."""
    from app.calendar.events import NewEvent, create_event

    await task(res, task_id, **fields)
    await create_event(res.db, NewEvent(id=f"evt_{task_id}", org_id="org_1", title="Kickoff", start_at=at(day, 14),
                                        end_at=at(day, 15), participants=({"email": "ana@example.com"},),
                                        user_id="user_1", agent_task_id=task_id))
    await res.db.execute("UPDATE scheduling_agent_tasks SET status = 'SCHEDULED', event_id = $2 WHERE id = $1",
                         task_id, f"evt_{task_id}")


async def send(res: Resources, task_id: str, channel: str, kind: str = "confirmation", **extra: Any) -> Any:
    payload = {"taskId": task_id, "userId": "user_1", "responseType": kind, "channel": channel, **extra}
    first = await result_of(res, await res.enqueuer.enqueue("send-response", payload), QUEUE)
    # The same reply again under another job id, as a retry or a re-run would: never sent twice.
    again = await result_of(res, await res.enqueuer.enqueue("send_agent_response", payload), QUEUE)
    return first, again


async def test_email_confirmation_with_invitation_goes_once_to_requester_and_participant(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """HTML + text, the meeting card, the participant list and the .ics; run twice, sent once."""
    day = meeting_day()
    await booked(res, "e1", day, email="req@example.com")
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE]):
        first, again = await send(res, "e1", "email")
    assert (first["status"], again["status"]) == ("sent", "duplicate")
    assert first["invitations"] == ["sent"] and again["invitations"] == ["duplicate"]
    [mine] = smtp_sink.to("req@example.com")
    assert len(smtp_sink.messages) == 2 and len(smtp_sink.to("ana@example.com")) == 1
    assert mine["Subject"] == "Confirmed: Kickoff"
    types = [p.get_content_type() for p in mine.walk()]
    assert "text/plain" in types and "text/html" in types and "text/calendar" in types
    assert "Participants: ana@example.com" in mine.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_sms_reply_fits_or_is_shortened_with_a_link_and_goes_once(
        make_settings: Callable[..., Settings], res: Resources, twilio: TwilioFake) -> None:
    """Five alternatives do not fit in 160 characters: a short text and the link, sent once."""
    await task(res, "s1", channel="sms", phone="+14155550100")
    alternatives = [{"startTime": at(meeting_day(), h).isoformat(), "endTime": at(meeting_day(), h + 1).isoformat()}
                    for h in range(9, 14)]
    await res.db.execute("UPDATE scheduling_agent_tasks SET alternatives = $1 WHERE id = 's1'", alternatives)
    async with in_process_worker(make_settings(**twilio.env()), [QUEUE]):
        first, again = await send(res, "s1", "sms", "alternatives")
    [sms] = twilio.messages
    assert (first["status"], again["status"]) == ("sent", "duplicate")
    assert sms["to"] == "+14155550100" and "5 free times" in sms["body"] and len(sms["body"]) <= 160
    assert sms["body"].endswith("/scheduling/tasks/s1")


async def test_signed_webhooks_for_confirmed_conflict_and_cancelled_go_once_each(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Each event type once, signed with WEBHOOK_SECRET over timestamp and body."""
    seen: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hook"
    await booked(res, "w1", meeting_day(), webhook=url)
    settings = make_settings(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1")
    try:
        async with in_process_worker(settings, [QUEUE]):
            for kind in ("confirmation", "alternatives", "cancellation"):
                await send(res, "w1", "webhook", kind)
    finally:
        await runner.cleanup()
    events = [json.loads(body)["event"] for _, body in seen]
    assert events == ["scheduling.confirmed", "scheduling.conflict_detected", "scheduling.cancelled"]
    for headers, body in seen:
        assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert json.loads(seen[0][1])["data"]["event"]["id"] == "evt_w1"


async def test_unconfigured_channels_and_missing_recipients_finish_skipped(settings: Settings, res: Resources) -> None:
    """No Twilio: skipped with the reason. No address at all: skipped, saying so. Chat always works."""
    await task(res, "k1", channel="sms", phone="+14155550100")
    await task(res, "k2", channel="email")
    async with in_process_worker(settings, [QUEUE]):
        sms, _ = await send(res, "k1", "sms", "clarification")
        email, _ = await send(res, "k2", "email", "error", metadata={"message": "calendar unavailable"})
        chat, again = await send(res, "k2", "chat", "clarification")
    assert sms["status"] == "skipped" and "TWILIO" in sms["reason"].upper()
    assert email["status"] == "skipped" and "no email address" in email["reason"]
    assert (chat["status"], again["status"]) == ("sent", "duplicate")
    assert await res.db.fetchval("SELECT count(*) FROM chat_messages") == 1


async def test_reschedule_moves_the_event_renews_reminders_and_emails_participants(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """Rescheduling skips the old reminders and creates new ones (SEQUENCE + 1); cancelling skips
    them all; the participant hears of each."""
    day = meeting_day()
    await booked(res, "v1", day)
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE]):
        moved = await result_of(res, await res.enqueuer.enqueue("reschedule_meeting", {
            "taskId": "v1", "userId": "user_1", "eventId": "evt_v1", "startTime": at(day, 16).isoformat(),
            "endTime": at(day, 17).isoformat()}), QUEUE)
        await smtp_sink.wait_for(lambda s: len(s.messages) >= 1)
        reminders = await res.db.fetch("SELECT kind, status, reminder_time FROM event_reminders ORDER BY id")
        cancelled = await result_of(res, await res.enqueuer.enqueue("cancel_meeting", {
            "taskId": "v1", "userId": "user_1", "eventId": "evt_v1"}), QUEUE)
        await smtp_sink.wait_for(lambda s: len(s.messages) >= 2)
    assert moved["status"] == "RESCHEDULED" and cancelled["remindersSkipped"] == 2
    assert [(r["kind"], r["status"]) for r in reminders] == [("24h", "SKIPPED"), ("2h", "SKIPPED"),
                                                             ("24h", "PENDING"), ("2h", "PENDING")]
    assert reminders[3]["reminder_time"] == at(day, 14)
    event = await res.db.fetchrow("SELECT status, sequence, start_at FROM scheduling_events")
    assert event is not None and tuple(event) == ("CANCELLED", 2, at(day, 16))
    assert [m["Subject"] for m in smtp_sink.to("ana@example.com")] == ["Confirmed: Kickoff", "Cancelled: Kickoff"]


async def test_retry_task_reruns_the_failed_step_after_its_delay_then_gives_up(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A FAILED task's step runs again after previousAttempts x 5 s; at the maximum the task
    goes NEEDS_REVIEW instead."""
    day = meeting_day()
    step = {"taskId": "f1", "userId": "user_1", "schedulingData": {
        "title": "Again", "startTime": at(day, 9).isoformat(), "endTime": at(day, 10).isoformat()}}
    await task(res, "f1")
    await task(res, "f2")
    for task_id in ("f1", "f2"):
        await res.db.execute("UPDATE scheduling_agent_tasks SET status = 'FAILED', failed_step = 'schedule_meeting',"
                             " failed_payload = $2 WHERE id = $1", task_id, step)
    async with in_process_worker(make_settings(poll_fallback_ms=50), [QUEUE]):
        retried = await result_of(res, await res.enqueuer.enqueue("retry-task", {
            "taskId": "f1", "userId": "user_1", "reason": "timeout", "previousAttempts": 2}), QUEUE)
        job_id = "schedule_meeting:f1:retry2"
        async with asyncio.timeout(10):  # queued by the outbox relay once retry_task committed
            while (score := await res.redis.zscore(QUEUE, job_id)) is None:
                await asyncio.sleep(0.02)
        run_at_s = score / 1000
        assert 8 < run_at_s - time.time() <= 10
        await res.redis.zadd(QUEUE, {job_id: int(time.time() * 1000)})
        await status_is(res, "f1", "SCHEDULED")
        gave_up = await result_of(res, await res.enqueuer.enqueue("retry_task", {
            "taskId": "f2", "userId": "user_1", "reason": "timeout", "previousAttempts": 3}), QUEUE)
    assert (retried["status"], retried["delayS"]) == ("PENDING", 10)
    assert gave_up["status"] == "NEEDS_REVIEW"
    assert await res.db.fetchval("SELECT status FROM scheduling_agent_tasks WHERE id = 'f2'") == "NEEDS_REVIEW"


async def test_a_missing_task_is_a_dead_letter_and_bad_times_are_refused(settings: Settings, res: Resources) -> None:
    """A task that does not exist is dead-lettered at once; an end before the start is refused."""
    from app.errors import InvalidPayload

    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("process_inbox", {"taskId": "ghost", "userId": "user_1"})
        await wait_for_dead_letters(res, 1)
    [dead] = await res.dlq.list()
    assert dead.attempts == 1 and "does not exist" in dead.error_message
    with pytest.raises(InvalidPayload, match="endTime must be after startTime"):
        await res.enqueuer.enqueue("schedule_meeting", {"taskId": "t", "userId": "u", "schedulingData": {
            "title": "x", "startTime": "2030-01-01T10:00:00Z", "endTime": "2030-01-01T09:00:00Z"}})
