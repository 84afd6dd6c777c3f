"""One job per notification channel, for the web app and the other job families to enqueue.

Each job sends one message through `Notifier.send()`, so a retried or re-run job never
notifies twice; a channel that is not configured finishes the job `skipped` with the reason.
"""

from __future__ import annotations

from typing import Any

from app.errors import JobSkipped
from app.jobs.resources import Job
from app.notify import Chat, Delivery, Email, Message, Sms, Webhook
from app.notify.payloads import SendChat, SendEmail, SendSms, SendWebhook
from app.queue.registry import JobSpec

QUEUE = "scheduling-reminders"

async def _send(job: Job, message: Message, key: str) -> dict[str, Any]:
    delivery = await job.res.providers.notifier.send(message, key=key, job_id=job.job_id)
    if delivery.status == "skipped":
        raise JobSkipped(delivery.reason or "channel not configured")
    return {**as_result(delivery), "attempt": job.attempt}


def as_result(delivery: Delivery) -> dict[str, Any]:
    return {"status": delivery.status, "notificationId": delivery.notification_id,
            "providerId": delivery.provider_id, "reason": delivery.reason}


async def send_email(job: Job, p: SendEmail) -> dict[str, Any]:
    return await _send(job, Email(to=p.to, to_name=p.to_name, subject=p.subject, text=p.text, html=p.html),
                       p.idempotency_key)


async def send_sms(job: Job, p: SendSms) -> dict[str, Any]:
    return await _send(job, Sms(to=p.to, body=p.body, link=p.link), p.idempotency_key)


async def send_webhook(job: Job, p: SendWebhook) -> dict[str, Any]:
    return await _send(job, Webhook(url=str(p.url), event=p.event, data=p.data), p.idempotency_key)


async def send_chat(job: Job, p: SendChat) -> dict[str, Any]:
    return await _send(job, Chat(user_id=p.user_id, org_id=p.org_id, body=p.body, data=p.data),
                       p.idempotency_key)


SPECS = (
    JobSpec(name="send_email", queue=QUEUE, payload=SendEmail, run=send_email,
            description="send one email (idempotent per key)"),
    JobSpec(name="send_sms", queue=QUEUE, payload=SendSms, run=send_sms,
            description="send one SMS through Twilio (idempotent per key)"),
    JobSpec(name="send_webhook", queue=QUEUE, payload=SendWebhook, run=send_webhook,
            description="POST one signed webhook (idempotent per key)"),
    JobSpec(name="send_chat", queue=QUEUE, payload=SendChat, run=send_chat,
            description="store and publish one in-app chat message (idempotent per key)"),
)
