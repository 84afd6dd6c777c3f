"""schedule_meeting, reschedule_meeting and cancel_meeting through the real worker: a conflict
becomes five alternatives, two bookings of one slot never both succeed, and a moved or cancelled
meeting renews or skips its reminders and tells the participants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.smtp import SmtpSink
from tests.support.jobs import result_of
from tests.support.scheduling import QUEUE, at, booked, chats, meeting_day, task
from tests.support.worker import in_process_worker


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
