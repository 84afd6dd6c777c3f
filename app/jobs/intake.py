"""Route an intake request to the pipeline that should handle it (routing arrives later)."""

from __future__ import annotations

from typing import Literal

from app.jobs._pending import not_built_yet
from app.queue.payload import Payload
from app.queue.registry import JobSpec


class RouteIntake(Payload):
    intake_request_id: str
    org_id: str
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


SPEC = JobSpec(name="route_intake", queue="intake-routing", payload=RouteIntake, run=not_built_yet,
               description="route an intake request to a pipeline and create the pipeline item")
