"""POST /jobs: one job or a list of them, each envelope and payload validated before any is
enqueued (all or nothing), then enqueued in one round trip by the Enqueuer, which wakes the
workers, so a job sent over HTTP starts as fast as one enqueued from Python.

Field names in errors are the payload's own (`orgId`), as the engine reports them, or the
envelope's (`delayMs`); in a list they carry the job's index: `[3].orgId`.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from app.config import UnknownQueue
from app.errors import InvalidPayload, UnknownJob
from app.queue.enqueue import Enqueued, JobRequest
from app.queue.priorities import MAX_PRIORITY
from app.queue.registry import Registry
from app.web.api.errors import ApiError

MAX_JOBS_PER_REQUEST = 1000
MAX_DELAY_MS = 366 * 86_400_000
JOB_ID_PATTERN = r"^[^\x00-\x20\x7f]{1,200}$"
"""Printable, no spaces or control characters: ids appear in Redis keys, logs and URLs."""
_MAX_REPORTED_FIELDS = 50


class JobBody(BaseModel):
    """One job of a POST /jobs body; camelCase only, unknown envelope fields refused (a typo in
    `runAt` must not silently run the job now)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, validate_by_alias=True,
                              validate_by_name=False)

    name: str = Field(min_length=1, max_length=200, description="the job's name (or an alias)")
    payload: dict[str, Any] | None = Field(None, description="the job's payload object")
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN, description="your id; a taken one is a duplicate")
    queue: str | None = Field(None, min_length=1, max_length=200, description="only for jobs that run on any queue")
    delay_ms: int | None = Field(None, ge=0, le=MAX_DELAY_MS, description="start no sooner than this from now")
    run_at: AwareDatetime | None = Field(None, description="start no sooner than this (ISO-8601 with offset)")
    priority: int | None = Field(None, ge=0, le=MAX_PRIORITY,
                                 description="BullMQ's: lower runs first; none (or 0) before any priority")


def job_items(body: Any) -> tuple[list[Any], bool]:
    """The jobs of a body and whether it was a list; 422 for anything else or too many."""
    if isinstance(body, dict):
        return [body], False
    if not isinstance(body, list):
        raise ApiError(422, "invalid_payload", "the body must be a job object or a list of them",
                       {"(body)": f"expected an object or a list, got {type(body).__name__}"})
    if not 1 <= len(body) <= MAX_JOBS_PER_REQUEST:
        raise ApiError(422, "invalid_payload", f"a list holds 1 to {MAX_JOBS_PER_REQUEST} jobs, not {len(body)}",
                       {"(body)": f"{len(body)} jobs; 1 to {MAX_JOBS_PER_REQUEST} are accepted"})
    return body, True


def plan(registry: Registry, body: Any, derived_ids: list[str] | None = None) -> list[JobRequest]:
    """Every job validated (all reported at once, up to 50 fields); then the requests to enqueue.
    `derived_ids` (from an Idempotency-Key) are the ids of jobs that do not name their own."""
    items, is_list = job_items(body)
    requests: list[JobRequest] = []
    problems: dict[str, str] = {}
    unknown_only = True
    for index, item in enumerate(items):
        prefix = f"[{index}]." if is_list else ""
        try:
            requests.append(_request(registry, item, derived_ids[index] if derived_ids else None))
        except (InvalidPayload, UnknownJob, UnknownQueue) as exc:
            unknown_only = unknown_only and isinstance(exc, UnknownJob)
            problems.update({prefix + field: why for field, why in _problems(exc).items()})
            if len(problems) >= _MAX_REPORTED_FIELDS:
                break
    if problems:
        what = "job" if not is_list else f"{len(problems)} field(s) in the list"
        raise ApiError(422, "unknown_job" if unknown_only else "invalid_payload",
                       f"nothing was enqueued: invalid {what}: " + "; ".join(f"{f}: {w}" for f, w in
                                                                            list(problems.items())[:5]), problems)
    return requests


def _problems(exc: InvalidPayload | UnknownJob | UnknownQueue) -> dict[str, str]:
    if isinstance(exc, InvalidPayload):
        return exc.problems
    return {"name" if isinstance(exc, UnknownJob) else "queue": str(exc)}


def _request(registry: Registry, item: Any, derived_id: str | None) -> JobRequest:
    if not isinstance(item, dict):
        raise InvalidPayload("(job)", {"(job)": f"expected a job object, got {type(item).__name__}"})
    try:
        job = JobBody.model_validate(item)
    except ValidationError as exc:
        raise InvalidPayload.from_pydantic(str(item.get("name", "(job)")), exc.errors()) from None
    if job.delay_ms is not None and job.run_at is not None:
        raise InvalidPayload(job.name, {"delayMs": "give delayMs or runAt, not both"})
    spec, parsed, queue = registry.validate(job.name, job.payload, job.queue)
    return JobRequest(spec.name, parsed, queue, job.job_id or derived_id,
                      defer_s=job.delay_ms / 1000 if job.delay_ms else None, run_at=job.run_at, priority=job.priority)


def reply_rows(requests: list[JobRequest], results: list[Enqueued | None]) -> list[dict[str, Any]]:
    """The 201 body's rows; a duplicate (its id was taken) reports no run time of its own."""
    rows = []
    for request, done in zip(requests, results, strict=True):
        if done is not None:
            rows.append({"jobId": done.job_id, "name": done.name, "queue": done.queue, "runAtMs": done.run_at_ms,
                         "duplicate": False})
        else:
            rows.append({"jobId": request.job_id, "name": request.name, "queue": request.queue, "runAtMs": None,
                         "duplicate": True})
    return rows
