"""The notification layer through its jobs: idempotency, skipped channels, breakers, signatures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from app.config import Settings
from app.jobs.resources import Resources
from app.providers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import INVALID_NUMBER, TwilioFake
from tests.support.jobs import result_of
from tests.support.records import write_job
from tests.support.services import free_port
from tests.support.worker import in_process_worker

QUEUE = "scheduling-reminders"
SECRET = "whsec-test"


def email(key: str, to: str = "ana@example.com") -> dict[str, str]:
    return {"idempotencyKey": key, "to": to, "subject": f"About {key}", "text": "Hello"}


async def test_the_same_key_is_sent_once_whatever_enqueues_it(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """Two jobs with one idempotency key: one email; the second job reports a duplicate."""
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE]):
        first = await result_of(res, await res.enqueuer.enqueue("send_email", email("k1")), QUEUE)
        second = await result_of(res, await res.enqueuer.enqueue("send_email", email("k1")), QUEUE)
    assert first["status"] == "sent" and first["providerId"].startswith("<")
    assert second["status"] == "duplicate"
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.messages[0]["Message-ID"] == first["providerId"]
    row = await res.db.fetchrow("SELECT status, channel, recipient FROM notifications WHERE idempotency_key = 'k1'")
    assert row is not None
    assert dict(row) == {"status": "SENT", "channel": "email", "recipient": "ana@example.com"}


async def test_a_channel_that_is_not_configured_finishes_skipped_with_the_reason(
        settings: Settings, res: Resources) -> None:
    """No Twilio keys and no SMTP host: the sends finish `skipped`, naming what is missing."""
    async with in_process_worker(settings, [QUEUE]):
        sms = await result_of(res, await res.enqueuer.enqueue(
            "send_sms", {"idempotencyKey": "s1", "to": "+14155550100", "body": "hi"}), QUEUE)
        mail = await result_of(res, await res.enqueuer.enqueue("send_email", email("e1")), QUEUE)
    assert sms == {"status": "skipped", "reason": "SMS is not configured (TWILIO_ACCOUNT_SID, "
                                                  "TWILIO_AUTH_TOKEN, TWILIO_PHONE_NUMBER unset)"}
    assert mail["status"] == "skipped" and "SMTP_HOST" in mail["reason"]
    assert await res.db.fetchval("SELECT count(*) FROM notifications WHERE status = 'SKIPPED'") == 2


async def test_sms_goes_through_the_twilio_api_and_a_refusal_is_not_retried(
        make_settings: Callable[..., Settings], res: Resources, twilio: TwilioFake) -> None:
    """The real twilio client sends through the API; a 500 is retried, a 400 (bad number) goes
    to the dead-letter queue at once; a long text is trimmed to two segments ending in its link."""
    settings = make_settings(**twilio.env(), send_sms_base_delay_s=0.1)
    long_text = "word " * 200
    twilio.fail_with = [500]
    async with in_process_worker(settings, [QUEUE]):
        ok = await result_of(res, await res.enqueuer.enqueue("send_sms", {
            "idempotencyKey": "s1", "to": "+14155550100", "body": long_text, "link": "https://app.test/e/1"}), QUEUE)
        await res.enqueuer.enqueue("send_sms", {"idempotencyKey": "s2", "to": INVALID_NUMBER, "body": "hi"})
        async with asyncio.timeout(20):
            while not await res.dlq.list():
                await asyncio.sleep(0.05)
    assert ok["status"] == "sent" and ok["providerId"].startswith("SM")
    [sent] = twilio.messages
    assert len(sent["body"]) <= 306 and sent["body"].endswith("… https://app.test/e/1")
    [dead] = await res.dlq.list()
    assert dead.job_name == "send_sms" and dead.attempts == 1 and "Invalid 'To' Phone Number" in dead.error_message


async def test_smtp_down_opens_the_breaker_defers_without_burning_attempts_then_delivers_once(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """With the SMTP server down, the first failures open the breaker; the other sends wait for it
    without spending attempts — each job's attempts equal the sends it really tried — and once
    the server is back every email arrives exactly once. An invalid payload goes straight to the
    dead-letter queue with a message naming the field."""
    settings = make_settings(**smtp_sink.env(), breaker_failure_threshold=3, breaker_reset_timeout_s=1.5,
                             send_email_base_delay_s=0.1)
    await smtp_sink.stop()
    keys = [f"down-{n}" for n in range(10)]
    async with in_process_worker(settings, [QUEUE]) as process:
        # Invalid input written by another producer, past the enqueue-time validation.
        await write_job(res.redis, QUEUE, "send_email", {"idempotencyKey": "bad", "to": "not-an-address"},
                        job_id="bad-payload")
        for key in keys:
            await res.enqueuer.enqueue("send_email", email(key, to=f"{key}@example.com"), job_id=key)
        breaker = process.res.breakers["smtp"]
        async with asyncio.timeout(10):
            while breaker.opened_at is None:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # retries and later jobs meet the open breaker meanwhile
        await smtp_sink.start()  # back before the breaker half-opens: its probe succeeds
        results = [await res.enqueuer.job(key, QUEUE).result(timeout_s=30, poll_delay=0.02) for key in keys]
        metrics = process.res.metrics.render().decode()
    assert sorted(str(m["To"]) for m in smtp_sink.messages) == sorted(f"{k}@example.com" for k in keys)
    claims = {r["idempotency_key"]: r["attempts"] for r in await res.db.fetch("SELECT * FROM notifications")}
    assert all(r["status"] == "sent" for r in results)
    assert [r["attempt"] for r in results] == [claims[k] for k in keys]
    assert any(r["attempt"] == 1 for r in results) and any(r["attempt"] > 1 for r in results)
    [dead] = await res.dlq.list()
    assert dead.job_id == "bad-payload" and "to:" in dead.error_message and dead.attempts == 1
    assert 'workhorse_circuit_breaker_state{provider="smtp"} 0.0' in metrics
    assert 'workhorse_notifications_total{channel="email",outcome="failed"}' in metrics


@asynccontextmanager
async def receiver(seen: list[web.Request | bytes]) -> AsyncIterator[str]:
    """A webhook endpoint on 127.0.0.1 keeping each request and its body."""
    async def hook(request: web.Request) -> web.Response:
        seen.extend([request, await request.read()])
        return web.Response(status=204, headers={"X-Request-Id": "rcv-1"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_webhook_signature_verifies_with_the_secret_and_fails_with_another(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """The receiver verifies X-Signature over timestamp and body with WEBHOOK_SECRET; another
    secret, a changed body or an old timestamp fail."""
    seen: list[web.Request | bytes] = []
    settings = make_settings(webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1")
    async with receiver(seen) as url, in_process_worker(settings, [QUEUE]):
        result = await result_of(res, await res.enqueuer.enqueue(
            "send_webhook", {"idempotencyKey": "w1", "url": url, "event": "meeting.booked", "data": {"id": 7}}), QUEUE)
    request, body = seen
    assert isinstance(request, web.Request) and isinstance(body, bytes)
    ts, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert result["status"] == "sent" and result["providerId"] == "rcv-1"
    assert json.loads(body) == {"event": "meeting.booked", "id": "w1", "data": {"id": 7}}
    assert verify(SECRET, ts, body, signature)
    assert not verify("another-secret", ts, body, signature)
    assert not verify(SECRET, ts, body.replace(b"7", b"8"), signature)
    assert not verify(SECRET, ts, body, signature, now=int(ts) + 3600)


async def test_webhooks_to_private_addresses_are_refused_unless_allowed(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Without an allow-list entry, a webhook to a loopback address (literal or by name) is
    refused at once: dead-lettered after one attempt, nothing sent."""
    seen: list[web.Request | bytes] = []
    settings = make_settings(webhook_secret=SECRET)
    async with receiver(seen) as url, in_process_worker(settings, [QUEUE]):
        for key, target in (("ip", url), ("name", url.replace("127.0.0.1", "localhost"))):
            await res.enqueuer.enqueue("send_webhook", {"idempotencyKey": key, "url": target, "event": "x"})
        async with asyncio.timeout(15):
            while len(await res.dlq.list()) < 2:
                await asyncio.sleep(0.05)
    assert seen == []
    dead = await res.dlq.list()
    assert all(d.attempts == 1 and "non-public address" in d.error_message for d in dead), dead


async def test_chat_messages_are_stored_and_published_to_the_user(settings: Settings, res: Resources) -> None:
    """send_chat stores the message and publishes it on the user's channel for live sessions."""
    pubsub = res.redis.pubsub()
    await pubsub.subscribe("workhorse:chat:user-9")
    try:
        async with in_process_worker(settings, [QUEUE]):
            await result_of(res, await res.enqueuer.enqueue(
                "send_chat", {"idempotencyKey": "c1", "userId": "user-9", "body": "Booked!", "data": {"n": 1}}), QUEUE)
        async with asyncio.timeout(5):
            while (message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
                pass
    finally:
        await pubsub.aclose()
    event = json.loads(message["data"])
    assert event["body"] == "Booked!" and event["data"] == {"n": 1} and event["key"] == "c1"
    row = await res.db.fetchrow("SELECT user_id, body, data FROM chat_messages")
    assert row is not None
    assert (row["user_id"], row["body"], row["data"]) == ("user-9", "Booked!", {"n": 1})


async def test_a_pooled_smtp_connection_closed_by_the_server_is_replaced_at_once(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """Emails reuse one connection; when the server has closed it meanwhile, the next email goes
    out on a fresh connection in the same attempt, without a retry or a breaker failure."""
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE]) as process:
        await result_of(res, await res.enqueuer.enqueue("send_email", email("before")), QUEUE)
        await smtp_sink.stop()  # drops the pooled connection
        await smtp_sink.start()
        after = await result_of(res, await res.enqueuer.enqueue("send_email", email("after")), QUEUE)
        failures = process.res.breakers["smtp"].failures
    assert after["status"] == "sent" and after["attempt"] == 1
    assert failures == 0
    assert [m["Subject"] for m in smtp_sink.messages] == ["About before", "About after"]
