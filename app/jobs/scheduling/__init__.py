"""The scheduling agent: classify inbox items, schedule meetings, send responses (later)."""

from __future__ import annotations

from typing import Literal

from app.jobs._pending import not_built_yet
from app.queue.payload import Payload
from app.queue.registry import JobSpec

QUEUE = "scheduling-agent"


class ClassifyInboxItem(Payload):
    inbox_item_id: str
    org_id: str


class ScheduleMeeting(Payload):
    agent_task_id: str
    org_id: str


class SendAgentResponse(Payload):
    agent_task_id: str
    org_id: str
    channel: Literal["email", "sms", "chat", "webhook"]


SPECS = (
    JobSpec(name="classify_inbox_item", queue=QUEUE, payload=ClassifyInboxItem, run=not_built_yet,
            description="classify an inbox item and create the agent task"),
    JobSpec(name="schedule_meeting", queue=QUEUE, payload=ScheduleMeeting, run=not_built_yet,
            description="find a slot without conflicts (or 5 alternatives) and book it"),
    JobSpec(name="send_agent_response", queue=QUEUE, payload=SendAgentResponse, run=not_built_yet,
            description="send the agent's reply on the item's channel"),
)
