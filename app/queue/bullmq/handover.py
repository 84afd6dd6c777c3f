"""What a BullMQ job becomes in Workhorse: its job id, the request to enqueue, and which of its
options the ingress acts on. Pure: app/queue/bullmq/ingress.py reads the job and acts on this.

Job ids. BullMQ refuses custom ids that are integers or contain ":" ("Custom Id cannot be
integers", "Custom Id cannot contain :") and makes up an integer id, a counter per queue, for a
job added without one. So a producer's `jobId` is the Workhorse job id as it is (`task-123` is
the Workhorse job `task-123`, deduplicated against every other way in: a job with that id queued,
running or holding a result is waited for, not enqueued again), while a made-up id, which means
nothing outside its BullMQ queue and starts again if the queue is obliterated, becomes
`bullmq:<queue>:<id>`, which no custom id can equal (ids BullMQ makes for job schedulers'
iterations, `repeat:...`, hold a ":" and are treated alike). A BullMQ job that finished before and is
taken again (`attemptsMade` > 0: retried from bull-board or with `job.retry()`) is a request to
run it again: that run is `<id>:run-<attemptsMade + 1>`, a new job, enqueued once however often
the hand-over is repeated, since BullMQ changes `attemptsMade` only when it finishes the job.

Options. `priority` becomes the Workhorse job's priority, with BullMQ's meaning (lower runs first,
none before any; app/queue/priorities.py), so the queue's waiting jobs run in the order BullMQ
would run them. `attempts` and `backoff` are superseded by the
queue's retry policy: `retry_options` picks them out so the ingress can say so once per queue.
Every other option is BullMQ's business (README "BullMQ ingress").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import AppError, InvalidPayload
from app.queue.enqueue import JobRequest
from app.queue.registry import Registry

AUTO_ID_PREFIX = "bullmq:"
"""+ `<queue>:<id>`: the Workhorse id of a BullMQ job whose id BullMQ made up."""


@dataclass(frozen=True, slots=True)
class BullJob:
    """What the ingress read of one BullMQ job."""

    queue: str
    id: str
    name: str
    payload: Any
    """Its data, read within the payload limits (app/queue/payload.py)."""
    opts: Mapping[str, Any]
    attempts_made: int
    """How often BullMQ has finished it (completed or failed) before."""
    priority: int
    """BullMQ's priority: 0 for none, else lower runs first."""
    refusal: AppError | None = None
    """Why it cannot be read at all (its data beyond the limits, its hash not BullMQ's)."""


@dataclass(frozen=True, slots=True)
class HandOver:
    """The Workhorse job a BullMQ job is handed to."""

    job_id: str
    name: str
    """The job's own name (whichever alias the producer used)."""
    queue: str
    request: JobRequest
    priority: int | None
    """BullMQ's priority, the Workhorse job's too; None when the job has none."""


def workhorse_job_id(job: BullJob) -> str:
    """The producer's own jobId, else one derived from BullMQ's; `:run-N` for a run asked again.
    Told apart by their shape, as BullMQ tells them apart (not by `opts.jobId`, which a record
    the library cannot read does not give)."""
    custom = not job.id.isdigit() and ":" not in job.id
    base = job.id if custom else f"{AUTO_ID_PREFIX}{job.queue}:{job.id}"
    return base if job.attempts_made <= 0 else f"{base}:run-{job.attempts_made + 1}"


def plan(registry: Registry, job: BullJob) -> HandOver:
    """The hand-over of `job`, validated like every other way in: raises UnknownJob,
    InvalidPayload (naming the field) or UnknownQueue for a job that cannot run."""
    if job.refusal is not None:
        raise job.refusal
    spec, parsed, queue = registry.validate(job.name, job.payload, job.queue)
    job_id = workhorse_job_id(job)
    priority = job.priority or None
    request = JobRequest(spec.name, parsed, queue=queue, job_id=job_id, pin_result=True, priority=priority)
    return HandOver(job_id, spec.name, queue, request, priority)


def retry_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The retry options a job carries that mean something to BullMQ (more than one attempt, a
    backoff): superseded by the queue's retry policy."""
    found: dict[str, Any] = {}
    attempts = opts.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        found["attempts"] = attempts
    if opts.get("backoff") not in (None, 0):
        found["backoff"] = opts["backoff"]
    return found


def unreadable(name: str, why: str) -> InvalidPayload:
    """The refusal of a job whose BullMQ hash the library could not read."""
    return InvalidPayload(name or "(unnamed)", {"(job)": f"BullMQ's record of the job cannot be read: {why}"})


def failure_text(result: Any) -> str:
    """A failed Workhorse job's error as BullMQ's failedReason: "ErrorClass: message"."""
    if isinstance(result, Mapping) and {"error", "message"} <= result.keys():
        return f"{result['error']}: {result['message']}"
    return str(result)
