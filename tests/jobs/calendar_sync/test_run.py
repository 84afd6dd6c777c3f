"""sync_calendar against a Google Calendar v3 + OAuth imitation: full and incremental syncs, 410,
token refresh stored encrypted, reauthorisation, deactivation, bad input, and synced events as
conflicts for the scheduling agent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from app.calendar.tokens import TokenCipher
from app.config import Settings
from app.errors import PermanentError
from app.jobs.resources import Resources
from app.queue.handles import JobFailed
from tests.fakes.google import GoogleFake, timed
from tests.support.calendar_sync import KEY, NOW, QUEUE, connect, connection, events, sync
from tests.support.jobs import result_of
from tests.support.scheduling import at, meeting_day
from tests.support.worker import in_process_worker


async def test_full_sync_of_600_events_over_pages_stores_each_once(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """600 events come in three pages of 250 (maxResults); a second full sync changes nothing.
    Events the product pushed to Google itself (private marker, or our iCalUID) are not imported."""
    await connect(res, google)
    for i in range(600):
        google.put(timed(f"ev{i:04d}", NOW + dt.timedelta(hours=i)))
    google.put(timed("mine1", NOW, extendedProperties={"private": {"workhorseEventId": "evt-9"}}))
    google.put(timed("mine2", NOW, iCalUID="evt-10@workhorse"))
    async with in_process_worker(sync_settings(), [QUEUE]):
        first = await sync(res, sync_type="full")
        again = await sync(res, sync_type="full")
    assert (first["created"], first["updated"], first["ownSkipped"]) == (600, 0, 2)
    assert (again["created"], again["updated"], again["cancelled"]) == (0, 0, 0)
    pages = [q for e, q in google.requests if e == "events"]
    assert len(pages) == 6 and {q["maxResults"] for q in pages} == {"250"}
    assert all(q["singleEvents"] == "true" and "timeMin" in q and "timeMax" in q for q in pages)
    stored = await events(res)
    assert len(stored) == 600 and "mine1" not in stored and "mine2" not in stored
    assert await res.db.fetchval("SELECT count(DISTINCT id) FROM scheduling_events") == 600
    row = stored["ev0001"]
    assert (row["source"], row["user_id"], row["org_id"], row["status"]) == ("google", "u1", "org-1", "SCHEDULED")
    assert row["start_at"] == NOW + dt.timedelta(hours=1)
    conn = await connection(res)
    assert conn["sync_token"] == f"st-{google.last_change}" and conn["last_synced_at"] is not None


async def test_incremental_sync_applies_one_update_one_deletion_and_one_new_event(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """Only the changes since the stored sync token are asked for and applied; the deleted event
    is cancelled here and its pending reminder skipped; nothing else is touched."""
    await connect(res, google)
    for i in range(5):
        google.put(timed(f"ev{i}", NOW + dt.timedelta(days=1, hours=i)))
    async with in_process_worker(sync_settings(), [QUEUE]):
        await sync(res)  # no sync token yet: a full sync
        deleted_id = (await events(res))["ev2"]["id"]
        await res.db.execute("INSERT INTO event_reminders (event_id, kind, reminder_time) VALUES ($1, '2h', $2)",
                             deleted_id, NOW + dt.timedelta(hours=20))
        token = (await connection(res))["sync_token"]
        google.put(timed("ev1", NOW + dt.timedelta(days=2), summary="Moved"))
        google.delete("ev2")
        google.put(timed("ev9", NOW + dt.timedelta(days=3)))
        result = await sync(res)
    assert result["syncType"] == "incremental"
    assert (result["created"], result["updated"], result["cancelled"], result["remindersSkipped"]) == (1, 1, 1, 1)
    assert google.requests[-1] == ("events", {"maxResults": "250", "singleEvents": "true", "syncToken": token})
    stored = await events(res)
    assert stored["ev1"]["title"] == "Moved" and stored["ev1"]["start_at"] == NOW + dt.timedelta(days=2)
    assert stored["ev2"]["status"] == "CANCELLED" and stored["ev9"]["status"] == "SCHEDULED"
    assert [stored[f"ev{i}"]["sequence"] for i in (0, 3, 4)] == [0, 0, 0]
    assert await res.db.fetchval("SELECT status FROM event_reminders") == "SKIPPED"


async def test_410_gone_leads_to_a_full_resync_that_cancels_what_vanished(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """Google forgot the sync token: the job runs a full sync at once (no failure), stores the
    new token, and cancels the events the full listing no longer has."""
    await connect(res, google)
    for i in range(3):
        google.put(timed(f"ev{i}", NOW + dt.timedelta(hours=i + 1)))
    async with in_process_worker(sync_settings(), [QUEUE]):
        await sync(res, sync_type="full")
        google.delete("ev0")
        google.forget_sync_tokens()
        result = await sync(res)
    assert result["syncType"] == "full" and result["cancelled"] == 1
    kinds = ["syncToken" in q for e, q in google.requests if e == "events"]
    assert kinds == [False, True, False]
    assert (await events(res))["ev0"]["status"] == "CANCELLED"
    conn = await connection(res)
    assert conn["sync_token"] == f"st-{google.last_change}" and conn["consecutive_failures"] == 0


async def test_an_expired_token_is_refreshed_stored_encrypted_and_never_in_clear_anywhere(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """An access token expiring within a minute is refreshed before the first call; the new one
    is stored encrypted, and no raw token appears in any column of any table (text or bytes)."""
    old_access, refresh = await connect(res, google, expires_in=dt.timedelta(seconds=30))
    google.put(timed("ev1", NOW + dt.timedelta(hours=1)))
    async with in_process_worker(sync_settings(), [QUEUE]):
        result = await sync(res)
    assert result["created"] == 1
    (token_request,) = [form for e, form in google.requests if e == "token"]
    assert token_request["refresh_token"] == refresh
    new_access = max(google.access_tokens)
    conn = await connection(res)
    assert TokenCipher([KEY]).decrypt(conn["access_token_enc"]) == new_access
    assert conn["token_expires_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    for raw in (old_access, new_access, refresh):
        assert await tables_containing(res, raw) == []
        assert await redis_values_containing(res, raw) == []


async def tables_containing(res: Resources, raw: str) -> list[str]:
    """Every public table with a row whose text form (bytea as hex) holds `raw` or its bytes."""
    tables = [r["tablename"] for r in await res.db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    hexed = raw.encode().hex()
    found = []
    for table in tables:
        hit = await res.db.fetchval(f'SELECT count(*) FROM "{table}" t WHERE strpos(t::text, $1) > 0'
                                    f" OR strpos(t::text, $2) > 0", raw, hexed)
        if hit:
            found.append(table)
    return found


async def redis_values_containing(res: Resources, raw: str) -> list[str]:
    """Redis keys (jobs, results, logs of runs) whose string value holds `raw`."""
    found = []
    async for key in res.redis.scan_iter():
        if await res.redis.type(key) == b"string" and raw.encode() in (await res.redis.get(key) or b""):
            found.append(key.decode())
    return found


async def test_a_revoked_refresh_token_marks_needs_reauth_notifies_once_and_burns_no_retry(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """invalid_grant: the connection becomes NEEDS_REAUTH, its user gets one chat message, the
    job finishes skipped after one refresh attempt; later syncs skip as inactive."""
    _, refresh = await connect(res, google, expires_in=dt.timedelta(seconds=-5))
    google.refresh_tokens.discard(refresh)
    async with in_process_worker(sync_settings(), [QUEUE]):
        first = await sync(res)
        second = await sync(res)
    assert first == {"status": "skipped", "reason": "Connection needs reauthorization"}
    assert second == {"status": "skipped", "reason": "Connection inactive"}
    assert google.count("token") == 1 and google.count("events") == 0
    assert (await connection(res))["status"] == "NEEDS_REAUTH"
    messages = await res.db.fetch("SELECT user_id, data FROM chat_messages")
    assert len(messages) == 1 and messages[0]["user_id"] == "u1"
    assert await res.dlq.list() == []


async def test_five_failed_syncs_deactivate_the_connection_and_notify_once(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """A success resets the failure count; five dead-lettered syncs in a row deactivate the
    connection with one notification, and the next sync is skipped as inactive."""
    await connect(res, google)
    async with in_process_worker(sync_settings(CALENDAR_SYNC_ATTEMPTS=1), [QUEUE]):
        google.fail_next("events", 2, 500)
        for _ in range(2):
            with pytest.raises(JobFailed):
                await sync(res)
        assert (await connection(res))["consecutive_failures"] == 2
        await sync(res)
        assert (await connection(res))["consecutive_failures"] == 0
        google.fail_next("events", 5, 503)
        for _ in range(5):
            with pytest.raises(JobFailed):
                await sync(res)
        after = await sync(res)
    conn = await connection(res)
    assert (conn["status"], conn["is_active"], conn["consecutive_failures"]) == ("INACTIVE", False, 5)
    assert after == {"status": "skipped", "reason": "Connection inactive"}
    assert await res.db.fetchval("SELECT count(*) FROM chat_messages") == 1


async def test_a_5xx_is_retried_through_the_retry_policy_then_succeeds(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """A 503 and an HTML error page are transient: the registry retries with backoff and the
    third attempt syncs; the connection records no failure."""
    await connect(res, google)
    google.put(timed("ev1", NOW + dt.timedelta(hours=1)))
    google.fail_next("events", 1, 503)
    google.fail_next("events", 1, 502, body="<html>Bad Gateway</html>", content_type="text/html")
    async with in_process_worker(sync_settings(), [QUEUE]):
        result = await sync(res)
    assert result["created"] == 1 and google.count("events") == 3
    assert (await connection(res))["consecutive_failures"] == 0


async def test_synced_events_make_schedule_meeting_see_a_conflict(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """The scheduling agent's schedule_meeting, asked for a slot overlapping a meeting that exists
    only in the user's Google Calendar, finds the conflict in the synced event and books nothing."""
    await connect(res, google, user="user_1")
    busy = at(meeting_day(), 13)  # a Wednesday, inside working hours' week
    google.put(timed("board", busy, 120, summary="Board meeting"))
    await res.db.execute("INSERT INTO scheduling_agent_tasks (id, org_id, user_id, message, channel)"
                         " VALUES ('t1', 'org-1', 'user_1', '', 'chat')")
    wanted = {"title": "Review", "startTime": (busy + dt.timedelta(hours=1)).isoformat(),
              "endTime": (busy + dt.timedelta(hours=2)).isoformat()}
    async with in_process_worker(sync_settings(), [QUEUE, "scheduling-agent"]):
        await sync(res, user="user_1")
        synced_id = (await events(res))["board"]["id"]
        result = await result_of(res, await res.enqueuer.enqueue("schedule_meeting", {
            "taskId": "t1", "userId": "user_1", "schedulingData": wanted}), "scheduling-agent")
    assert result["status"] == "AWAITING_INPUT" and result["conflicts"] == [synced_id]
    assert await res.db.fetchval("SELECT count(*) FROM scheduling_events WHERE source = 'app'") == 0


async def test_entry_points_refuse_bad_input_without_counting_it_against_the_connection(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """Unknown connection → dead letter NotFound; NUL in an id → invalid payload; another user's
    id → refused; tokens no key opens → dead letter; none of these counts as a failed sync."""
    await connect(res, google)
    await res.db.execute("INSERT INTO calendar_connections (id, org_id, user_id, calendar_id, access_token_enc,"
                         " refresh_token_enc, token_expires_at) VALUES ('junk', 'o', 'u2', 'x', 'garbage',"
                         " 'garbage', now() + interval '1 hour')")
    async with in_process_worker(sync_settings(), [QUEUE]):
        for conn_id, user in (("missing", "u1"), ("c1", "someone-else"), ("junk", "u2")):
            with pytest.raises(JobFailed):
                await sync(res, conn_id, user)
    with pytest.raises(PermanentError, match="connectionId"):
        await res.enqueuer.enqueue("sync_calendar", {"connectionId": "c\x001", "userId": "u1"})
    classes = sorted(d.error_class for d in await res.dlq.list())
    assert classes == ["ConnectionMismatch", "NotFound", "TokenUnreadable"]
    rows = await res.db.fetch("SELECT consecutive_failures, status FROM calendar_connections ORDER BY id")
    assert [tuple(r) for r in rows] == [(0, "ACTIVE"), (0, "ACTIVE")]
    assert google.count("events") == 0
