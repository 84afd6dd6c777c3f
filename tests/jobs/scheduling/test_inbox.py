"""process_inbox through the real worker: a message becomes a meeting with reminders and a chat
confirmation (offline, or the model's confident answer); an unsure answer needs review; a task
that does not exist is a dead letter, and bad times are refused."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.openai import FakeOpenAI
from tests.support.jobs import result_of
from tests.support.scheduling import QUEUE, at, chats, meeting_day, status_is, task
from tests.support.waits import wait_for_dead_letters
from tests.support.worker import in_process_worker


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
