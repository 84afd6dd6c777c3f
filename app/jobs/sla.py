"""The SLA monitor: classify open tasks against their SLA and report changes."""

from __future__ import annotations

from app.jobs._pending import not_built_yet
from app.payload import Payload
from app.registry import JobSpec


class SlaScan(Payload):
    org_id: str | None = None
    task_id: str | None = None


SPEC = JobSpec(name="sla_scan", queue="sla-monitor", payload=SlaScan, run=not_built_yet,
               description="COMPLIANT / WARNING / BREACHED per task; events on change (cron */15)")
