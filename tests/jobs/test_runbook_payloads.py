"""Payloads as the web app sends them (the seven-worker runbook's producers): job names in its
kebab-case, ids as strings, and fields this version does not know yet."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from app.config import Settings
from app.errors import InvalidPayload
from app.jobs.resources import Resources
from tests.fakes.smtp import SmtpSink
from tests.support.calendar import due_event
from tests.support.jobs import result_of
from tests.support.worker import in_process_worker

QUEUE = "scheduling-reminders"


@pytest.mark.parametrize(("sent_as", "runs_as"), [
    ("process-document", "process_document"), ("document-processing", "process_document"),
    ("document-embedding", "embed_document"), ("embed-document", "embed_document"),
    ("intake-routing", "route_intake"), ("calendar-sync", "sync_calendar"), ("scheduling-reminders", "send_reminder"),
    ("sla-monitor", "sla_scan"), ("no-such-job", None),
    ("route-intake", "route_intake"), ("sync-calendar", "sync_calendar"), ("send-reminder", "send_reminder"),
    ("sla-scan", "sla_scan"), ("process-inbox", "process_inbox"), ("schedule-meeting", "schedule_meeting"),
    ("send-response", "send_response"), ("retry-task", "retry_task"),
])
def test_the_runbooks_job_names_are_aliases(res: Resources, sent_as: str, runs_as: str | None) -> None:
    """Every job name the web app sends resolves to the job that runs it: the runbook's kebab-case
    names, and a queue's name for its main job (BullMQ producers often name jobs after the queue)."""
    if runs_as is None:
        with pytest.raises(Exception, match="unknown job"):
            res.registry.spec(sent_as)
    else:
        assert res.registry.spec(sent_as).name == runs_as


async def test_a_runbook_shaped_reminder_with_an_extra_field_runs(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """`send-reminder {reminderId: "12", eventId, sentBy}` — a string id and a field this version
    does not know — is accepted (the extra field dropped with a warning) and the reminder is sent."""
    ids = await due_event(res, "ev-rb", starts_in=dt.timedelta(hours=2) - dt.timedelta(minutes=1),
                          participants=[{"email": "ana@example.com", "name": "Ana"}])
    payload = {"reminderId": str(ids["2h"]), "eventId": "ev-rb", "sentBy": "web@3.2.0"}
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE]):
        result = await result_of(res, await res.enqueuer.enqueue("send-reminder", payload), QUEUE)
    assert result["status"] == "sent" and len(smtp_sink.messages) == 1


async def test_wrong_types_are_still_refused_naming_the_field(res: Resources) -> None:
    """Tolerating unknown fields does not mean accepting wrong ones."""
    with pytest.raises(InvalidPayload, match=r"reminderId: .*integer"):
        await res.enqueuer.enqueue("send-reminder", {"reminderId": "twelve", "eventId": "ev"})
