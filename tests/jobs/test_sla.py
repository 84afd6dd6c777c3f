"""The SLA monitor: status transitions in one set-based scan, one event per change, quiet repeats,
and its emails written to the outbox in the transaction that records the change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.jobs.resources import Resources
from tests.fakes.smtp import SmtpSink
from tests.support.jobs import result_of
from tests.support.outbox import wait_dispatched
from tests.support.worker import in_process_worker

QUEUE = "sla-monitor"
SLA = dt.timedelta(hours=10)


async def add_task(res: Resources, task_id: str, *, org: str = "org-1", used: float, **fields: Any) -> None:
    """A task created so that `used` (0.5 = 50%) of its 10-hour SLA has passed."""
    created = dt.datetime.now(dt.UTC) - SLA * used
    await res.db.execute(
        "INSERT INTO tasks (id, org_id, title, status, created_at, sla_target_at, assignee_email, escalation_email)"
        " VALUES ($1, $2, $3, 'IN_PROGRESS', $4, $5, $6, $7)",
        task_id, org, fields.get("title", f"Task {task_id}"), created, created + SLA,
        fields.get("assignee_email"), fields.get("escalation_email"))


async def age(res: Resources, task_id: str, used: float) -> None:
    """Move the task's clock so that `used` of its SLA has passed (no waiting for real time)."""
    created = dt.datetime.now(dt.UTC) - SLA * used
    await res.db.execute("UPDATE tasks SET created_at = $2, sla_target_at = $3 WHERE id = $1",
                         task_id, created, created + SLA)


async def scan(res: Resources, **scope: str) -> dict[str, Any]:
    result: dict[str, Any] = await result_of(res, await res.enqueuer.enqueue("sla_scan", scope), QUEUE)
    return result


async def events(res: Resources) -> list[tuple[str, str]]:
    rows = await res.db.fetch("SELECT task_id, event_type FROM agent_events ORDER BY id")
    return [(r["task_id"], r["event_type"]) for r in rows]


async def payload_of(res: Resources, event_type: str) -> dict[str, Any]:
    raw = await res.db.fetchval("SELECT payload FROM agent_events WHERE event_type = $1", event_type)
    payload: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    return payload


async def test_transitions_emit_exactly_one_event_each_across_repeated_scans(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """COMPLIANT → WARNING → BREACHED, each stage scanned three times: one SLA_WARNING and one
    SLA_BREACH in all; the assignee is warned once, the escalation contact told of the breach once."""
    await add_task(res, "t1", used=0.5, title="Call back ACME", assignee_email="amy@example.com",
                   escalation_email="boss@example.com")
    async with in_process_worker(make_settings(**smtp_sink.env()), [QUEUE, "scheduling-reminders"]):
        for _ in range(3):
            first = await scan(res)
        assert first["checked"] == 1 and await events(res) == []
        await age(res, "t1", 0.8)
        warned = [await scan(res) for _ in range(3)]
        await age(res, "t1", 1.2)
        breached = [await scan(res) for _ in range(3)]
        await smtp_sink.wait_for(lambda s: len(s.messages) == 3)
    assert [r["warnings"] for r in warned] == [1, 0, 0]
    assert [r["breaches"] for r in breached] == [1, 0, 0]
    assert await events(res) == [("t1", "SLA_WARNING"), ("t1", "SLA_BREACH")]
    warning = await payload_of(res, "SLA_WARNING")
    breach = await payload_of(res, "SLA_BREACH")
    assert 79 <= warning["percentage"] <= 81
    assert 1.9 * 3600 <= warning["remainingSeconds"] <= 2.1 * 3600
    assert breach["escalationRequired"] is True and "breachedAt" in breach
    task = await res.db.fetchrow("SELECT sla_status, sla_percentage FROM tasks WHERE id = 't1'")
    assert task is not None
    assert task["sla_status"] == "BREACHED" and task["sla_percentage"] >= 100
    by_recipient = sorted((str(m["To"]), str(m["Subject"])) for m in smtp_sink.messages)
    assert by_recipient == [("amy@example.com", "SLA breached: Call back ACME"),
                            ("amy@example.com", "SLA warning: Call back ACME"),
                            ("boss@example.com", "SLA breached: Call back ACME")]


async def test_a_scan_reports_per_org_and_honours_its_scope(settings: Settings, res: Resources) -> None:
    """A full scan reports checked / warnings / breaches per org; an org or task scope touches
    only that scope; done and cancelled tasks, and tasks without an SLA, are not checked."""
    await add_task(res, "a1", org="org-a", used=0.1)
    await add_task(res, "a2", org="org-a", used=0.9)
    await add_task(res, "b1", org="org-b", used=1.5)
    await add_task(res, "b2", org="org-b", used=0.76)
    await res.db.execute("UPDATE tasks SET status = 'COMPLETED' WHERE id = 'b2'")
    await res.db.execute("INSERT INTO tasks (id, org_id, title) VALUES ('no-sla', 'org-a', 'no due date')")
    async with in_process_worker(settings, [QUEUE]):
        only_b1 = await scan(res, taskId="b1")
        only_a = await scan(res, orgId="org-a")
        everything = await scan(res)
    assert only_b1["checked"] == 1 and only_b1["breaches"] == 1
    assert only_a["orgs"] == {"org-a": {"checked": 2, "warnings": 1, "breaches": 0, "warningNow": 1,
                                        "breachedNow": 0, "errors": 0}}
    assert everything["checked"] == 3 and everything["warnings"] == 0 and everything["breaches"] == 0
    assert everything["orgs"]["org-b"]["breachedNow"] == 1
    assert await events(res) == [("b1", "SLA_BREACH"), ("a2", "SLA_WARNING")]


async def test_a_task_can_go_straight_to_breached_and_back_to_compliant_quietly(
        settings: Settings, res: Resources) -> None:
    """A task first seen past its target emits only SLA_BREACH; moving its target out makes it
    COMPLIANT again without an event."""
    await add_task(res, "late", used=3.0)
    async with in_process_worker(settings, [QUEUE]):
        await scan(res)
        await age(res, "late", 0.2)
        relaxed = await scan(res)
    assert await events(res) == [("late", "SLA_BREACH")]
    assert relaxed["warnings"] == relaxed["breaches"] == 0
    assert await res.db.fetchval("SELECT sla_status FROM tasks WHERE id = 'late'") == "COMPLIANT"


async def test_the_clock_runs_from_creation_to_the_due_date_unless_started_is_configured(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """The runbook's clock: a task created 9 h ago and due in 1 h has used 90% (WARNING), although
    it was started only 1 h ago and its SLA target is 9 h away. With SLA_CLOCK_START=started the
    same task has used 1 h of 2 (50%) and goes back to COMPLIANT without an event."""
    now = dt.datetime.now(dt.UTC)
    hours = dt.timedelta(hours=1)
    await res.db.execute(
        "INSERT INTO tasks (id, org_id, title, status, created_at, started_at, due_at, sla_target_at)"
        " VALUES ('clock', 'org-1', 'Clock', 'IN_PROGRESS', $1, $2, $3, $4)",
        now - 9 * hours, now - hours, now + hours, now + 9 * hours)
    async with in_process_worker(make_settings(), [QUEUE]):
        by_default = await scan(res)
    async with in_process_worker(make_settings(sla_clock_start="started"), [QUEUE]):
        from_start = await scan(res)
    assert (by_default["warnings"], from_start["warnings"], from_start["breaches"]) == (1, 0, 0)
    assert await events(res) == [("clock", "SLA_WARNING")]
    warning = await payload_of(res, "SLA_WARNING")
    assert 89 <= warning["percentage"] <= 91
    assert abs(dt.datetime.fromisoformat(warning["slaTargetAt"]) - (now + hours)) < dt.timedelta(seconds=1)
    task = await res.db.fetchrow("SELECT sla_status, sla_percentage FROM tasks WHERE id = 'clock'")
    assert task is not None and task["sla_status"] == "COMPLIANT" and 49 <= task["sla_percentage"] <= 51


async def test_the_sla_scan_writes_its_emails_to_the_outbox_in_its_own_transaction(
        make_settings: Callable[..., Settings], res: Resources, smtp_sink: SmtpSink) -> None:
    """A breach found by the scan puts one send_email row per recipient into job_outbox in the
    transaction that records the SLA event (same transaction start time), and each email is sent
    once however often the scan runs again."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=12)
    await res.db.execute(
        "INSERT INTO tasks (id, org_id, title, status, created_at, sla_target_at, assignee_email, escalation_email)"
        " VALUES ('t1', 'org-1', 'Call back ACME', 'IN_PROGRESS', $1, $2, 'amy@example.com', 'boss@example.com')",
        created, created + dt.timedelta(hours=10))
    settings = make_settings(**smtp_sink.env())
    async with in_process_worker(settings, ["sla-monitor", "scheduling-reminders"]) as process:
        for _ in range(3):
            job = await process.res.enqueuer.enqueue("sla_scan", {})
            assert job is not None
            await process.res.enqueuer.job(job.job_id, "sla-monitor").result(timeout_s=20, poll_delay=0.02)
        await smtp_sink.wait_for(lambda s: len(s.messages) == 2)
        await wait_dispatched(res, [r["id"] for r in await res.db.fetch("SELECT id FROM job_outbox")])
    [event] = await res.db.fetch("SELECT id, created_at FROM agent_events")
    written = await res.db.fetch("SELECT job_name, job_id, created_at FROM job_outbox ORDER BY job_id")
    assert [(r["job_name"], r["job_id"]) for r in written] == [
        ("send_email", f"sla-email:{event['id']}:amy@example.com"),
        ("send_email", f"sla-email:{event['id']}:boss@example.com")]
    assert {r["created_at"] for r in written} == {event["created_at"]}
    assert sorted(str(m["To"]) for m in smtp_sink.messages) == ["amy@example.com", "boss@example.com"]
