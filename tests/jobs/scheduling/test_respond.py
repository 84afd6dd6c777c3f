"""send_response through the real worker: every reply channel (SMTP sink, Twilio imitation,
signed webhook, chat) delivers once, however often the reply is sent; unconfigured channels and
missing recipients finish skipped, saying why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from app.config import Settings
from app.jobs.resources import Resources
from app.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.support.jobs import result_of
from tests.support.scheduling import QUEUE, at, booked, meeting_day, task
from tests.support.services import free_port
from tests.support.worker import in_process_worker

SECRET = "whsec-agent"


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
