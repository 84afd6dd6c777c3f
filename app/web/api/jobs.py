"""/jobs: enqueue one job or many (POST), look at one (GET), withdraw a queued one (DELETE).

A running job is not interrupted: DELETE answers 409 `job_running`. A job cut off mid-write is
worse than one that finishes; waiting for it (GET) is the sound option. (A stock arq client's
`Job.abort()` does cancel a running job: its users asked for exactly that.)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.queue.enqueue import Enqueuer
from app.queue.registry import Registry
from app.web.api import idempotency, submit
from app.web.api.body import read_json
from app.web.api.context import api_of, reply
from app.web.api.errors import ApiError

routes = web.RouteTableDef()
_MAX_JOB_ID_CHARS = 200


@routes.post("/jobs", name="jobs-enqueue")
async def enqueue(request: web.Request) -> web.Response:
    api = api_of(request)
    body = await read_json(request, api.max_body_bytes, idle_timeout_s=api.res.settings.sidecar.header_timeout_s)
    key = idempotency.read_key(request.headers.get(idempotency.HEADER))
    status, data, replayed = await enqueue_once(api.res.enqueuer, body, key)
    return reply(data, status, {"Idempotent-Replayed": "true"} if replayed else None)


@routes.get("/jobs/{job_id}", name="jobs-show")
async def show(request: web.Request) -> web.Response:
    handle = api_of(request).res.enqueuer.job(_job_id(request))
    return reply(job_view(await handle.describe()))


@routes.delete("/jobs/{job_id}", name="jobs-abort")
async def abort(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    await api_of(request).res.enqueuer.job(job_id).abort()
    return reply({"jobId": job_id, "status": "aborted"})


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if len(job_id) > _MAX_JOB_ID_CHARS:
        raise ApiError(404, "job_not_found", f"no job has an id longer than {_MAX_JOB_ID_CHARS} characters")
    return job_id


async def enqueue_once(enqueuer: Enqueuer, body: Any, key: str | None) -> tuple[int, dict[str, Any], bool]:
    """(status, body, replayed): the jobs enqueued now, or the first response under `key`."""
    if key is None:
        return 201, await _enqueue(enqueuer.registry, enqueuer, body, None), False
    store = idempotency.IdempotencyStore(enqueuer.redis)
    print_ = idempotency.fingerprint(body)
    first = await store.claim(key, print_)
    if first is not None:
        return 201, first, True
    try:
        items, _ = submit.job_items(body)
        data = await _enqueue(enqueuer.registry, enqueuer, body, idempotency.derived_job_ids(key, len(items)))
    except BaseException:
        await store.release(key)
        raise
    await store.store(key, print_, data)
    return 201, data, False


async def _enqueue(registry: Registry, enqueuer: Enqueuer, body: Any, derived_ids: list[str] | None) -> dict[str, Any]:
    requests = submit.plan(registry, body, derived_ids)
    return {"jobs": submit.reply_rows(requests, await enqueuer.enqueue_many(requests))}


def job_view(described: dict[str, Any]) -> dict[str, Any]:
    """GET /jobs/{id}'s body from JobHandle.describe(): a finished job is complete, failed or
    aborted, with its result or its error; 404 for a job Redis does not know (any more)."""
    status = described["status"]
    if status == "not_found":
        raise ApiError(404, "job_not_found", f"job {described['jobId']} is unknown, or finished longer ago than "
                                             "results are kept (KEEP_RESULT_S, KEEP_FAILED_S)")
    view: dict[str, Any] = {"jobId": described["jobId"], "name": described.get("job"), "queue": described["queue"],
                            "status": status, "progress": described.get("progress"),
                            "attempts": described.get("attempt"), "finishedAt": described.get("finishedAt")}
    if status == "complete":
        if described["job"] == "<aborted>":
            view.update(status="aborted", name=None, attempts=0)
        elif not described["success"]:
            view["status"] = "failed"
        view["result" if view["status"] == "complete" else "error"] = described["result"]
    return view
