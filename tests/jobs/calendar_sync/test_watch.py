"""Push channels (Google's events.watch): opened by a sync when CALENDAR_PUSH_URL is set, a
verified push enqueues one incremental sync, anything else is refused, and a channel near its
end is replaced."""

from __future__ import annotations

from collections.abc import Callable

from app.calendar.push import handle_push
from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.google import GoogleFake
from tests.support.calendar_sync import QUEUE, connect, sync
from tests.support.worker import in_process_worker


async def test_push_channel_is_opened_verified_enqueues_a_sync_and_is_renewed(
        sync_settings: Callable[..., Settings], res: Resources, google: GoogleFake) -> None:
    """With CALENDAR_PUSH_URL a sync opens an events.watch channel; a push with its token enqueues
    one incremental sync (a second push while it is queued adds none); unknown channels, wrong
    tokens and bad headers are refused; a channel near its end is replaced and the old stopped."""
    await connect(res, google)
    async with in_process_worker(sync_settings(CALENDAR_PUSH_URL="https://hooks.example.com/push"), [QUEUE]):
        assert (await sync(res))["watch"] == "renewed"
        (channel,) = google.channels
        assert channel["address"] == "https://hooks.example.com/push"
        headers = {"X-Goog-Channel-ID": channel["id"], "X-Goog-Channel-Token": channel["token"],
                   "X-Goog-Resource-ID": channel["resourceId"], "X-Goog-Resource-State": "exists"}
        assert (await handle_push(res, {**headers, "X-Goog-Resource-State": "sync"})).status == 200
        assert (await sync(res))["watch"] == "current"
        await res.db.execute("UPDATE calendar_connections SET watch_expires_at = now() + interval '1 hour'")
        # The worker may start it at once: wait for it, then check the push ended in a sync.
        first, second = await handle_push(res, headers), await handle_push(res, headers)
        assert first.reason == "sync enqueued" and second.reason in ("sync already queued", "sync enqueued")
        assert first.job_id is not None
        renewed = await res.enqueuer.job(first.job_id, QUEUE).result(timeout_s=20, poll_delay=0.02)
    assert renewed["syncType"] == "incremental" and renewed["watch"] == "renewed"
    assert len(google.channels) == 2 and google.stopped == [{"id": channel["id"], "resourceId": "res-primary"}]
    current = {**headers, "X-Goog-Channel-ID": google.channels[-1]["id"],
               "X-Goog-Channel-Token": google.channels[-1]["token"]}
    assert (await handle_push(res, headers)).status == 404  # the replaced channel is gone
    refusals = [await handle_push(res, h) for h in (
        {**current, "X-Goog-Channel-Token": "guess"}, {**current, "X-Goog-Resource-ID": "other"},
        {**current, "X-Goog-Channel-ID": "nope"},
        {**headers, "X-Goog-Channel-ID": "a\x00b"}, {})]
    assert [r.status for r in refusals] == [403, 403, 404, 400, 400]
