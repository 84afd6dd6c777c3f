"""A job with side effects a fault could double, for the fault tests and the chaos run (loaded
with WORKHORSE_EXTRA_JOBS=tests.support.effects).

`effect` sends one email through the notification ledger (key `effect:<tag>`, so a second run
of the job must not send again), then works for `workMs`, writing a row per run into
`test_effect_runs` (which host ran it, which attempt), and returns the host. A run that is
taken over, repeated after a crash or fenced shows up as rows; a doubled side effect shows up
as two emails for one tag in the SMTP sink.
"""

from __future__ import annotations

import asyncio
import os

from app.jobs.resources import Job
from app.providers.messages import Email
from app.queue.payload import Payload
from app.queue.registry import ANY_QUEUE, JobSpec

# Set per worker process by the tests: which host (network namespace) it runs on.
HOST_VARIABLE = "TEST_HOST_NAME"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS test_effect_runs (
    tag text NOT NULL, job_id text NOT NULL, attempt int NOT NULL, host text NOT NULL,
    at timestamptz NOT NULL DEFAULT now())
"""


class Effect(Payload):
    tag: str
    email: str | None = None
    """Send one email here first (once per tag, whatever happens to the job)."""
    work_ms: int = 0


async def effect(job: Job, p: Effect) -> dict[str, object]:
    host = os.environ.get(HOST_VARIABLE, "?")
    await job.res.db.execute("INSERT INTO test_effect_runs (tag, job_id, attempt, host) VALUES ($1, $2, $3, $4)",
                             p.tag, job.job_id, job.attempt, host)
    if p.email:
        await job.res.providers.notifier.send(
            Email(to=p.email, subject=f"effect {p.tag}", text=f"effect {p.tag}"), key=f"effect:{p.tag}",
            job_id=job.job_id)
    if p.work_ms:
        await asyncio.sleep(p.work_ms / 1000)
    return {"tag": p.tag, "host": host}


SPECS = (JobSpec(name="effect", queue=ANY_QUEUE, payload=Effect, run=effect,
                 description="test job: an email through the ledger, then work"),)
