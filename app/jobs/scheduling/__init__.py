"""The scheduling agent: classify a task's message, book meetings without double booking, answer
on the channel the person used, and retry failed steps (runbook section 4.7).

process_inbox → schedule_meeting | reschedule_meeting | cancel_meeting | (availability answered
in place) → send_response; retry_task re-runs a failed step. The web app's names
(`process-inbox`, ...) and the earlier `classify_inbox_item` / `send_agent_response` are aliases.
"""

from __future__ import annotations

from app.jobs.scheduling.inbox import process_inbox
from app.jobs.scheduling.meeting import cancel_meeting, reschedule_meeting, schedule_meeting
from app.jobs.scheduling.payloads import (
    CancelMeeting,
    ProcessInbox,
    RescheduleMeeting,
    RetryTask,
    ScheduleMeeting,
    SendResponse,
)
from app.jobs.scheduling.respond import send_response
from app.jobs.scheduling.retry import record_step_failure, retry_task
from app.queue.registry import JobSpec

QUEUE = "scheduling-agent"

SPECS = (
    JobSpec(name="process_inbox", queue=QUEUE, payload=ProcessInbox, run=process_inbox,
            aliases=("classify_inbox_item", "classify-inbox-item"), on_dead_letter=record_step_failure,
            description="classify a task's message (model or offline rules) and enqueue its next step"),
    JobSpec(name="schedule_meeting", queue=QUEUE, payload=ScheduleMeeting, run=schedule_meeting,
            on_dead_letter=record_step_failure,
            description="book a meeting without double booking, or offer the 5 nearest free slots"),
    JobSpec(name="reschedule_meeting", queue=QUEUE, payload=RescheduleMeeting, run=reschedule_meeting,
            on_dead_letter=record_step_failure,
            description="move a meeting (new reminders) unless someone is busy, and tell the participants"),
    JobSpec(name="cancel_meeting", queue=QUEUE, payload=CancelMeeting, run=cancel_meeting,
            on_dead_letter=record_step_failure,
            description="cancel a meeting and its reminders, and tell the participants"),
    JobSpec(name="send_response", queue=QUEUE, payload=SendResponse, run=send_response,
            aliases=("send_agent_response", "send-agent-response"), on_dead_letter=record_step_failure,
            description="send the agent's reply by email, SMS, chat or webhook (once per reply)"),
    JobSpec(name="retry_task", queue=QUEUE, payload=RetryTask, run=retry_task,
            description="re-run a task's failed step after min(n x 5 s, 60 s), or mark it NEEDS_REVIEW"),
)
