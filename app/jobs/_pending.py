"""Shared by job families whose behaviour is not built yet: validate, then finish `skipped`.

The payload models and queues of these families are real (the web app enqueues them today);
their work arrives with later issues. Finishing `skipped` with a reason keeps that honest in
results, metrics and logs instead of pretending the work was done.
"""

from __future__ import annotations

from typing import NoReturn

from app.errors import JobSkipped
from app.queue.payload import Payload
from app.runtime.resources import Job


async def not_built_yet(job: Job, p: Payload) -> NoReturn:
    raise JobSkipped(f"{job.name} is not implemented in this version; payload accepted")
