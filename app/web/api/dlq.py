"""/dlq: list dead letters, retry one (enqueued again under its own id), delete one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiMapping

from app.queue.dead_letters import DeadLetter
from app.web.api.context import api_of, reply
from app.web.api.errors import ApiError

routes = web.RouteTableDef()
MAX_LIST = 500
_STATUSES = ("DEAD", "RETRIED")


@routes.get("/dlq", name="dlq-list")
async def list_letters(request: web.Request) -> web.Response:
    queue, limit, status = _list_query(request.query)
    letters = await api_of(request).res.dlq.list(queue=queue, limit=limit, status=status)
    return reply({"deadLetters": [letter_view(d) for d in letters]})


@routes.post("/dlq/{id}/retry", name="dlq-retry")
async def retry(request: web.Request) -> web.Response:
    res, letter_id = api_of(request).res, _letter_id(request)
    job_id = await res.dlq.retry(letter_id, res.enqueuer)
    return reply({"deadLetterId": letter_id, "jobId": job_id})


@routes.delete("/dlq/{id}", name="dlq-delete")
async def delete(request: web.Request) -> web.Response:
    letter_id = _letter_id(request)
    await api_of(request).res.dlq.delete(letter_id)
    return reply({"deadLetterId": letter_id, "deleted": True})


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise ApiError(404, "not_found", f"dead letter ids are positive integers, not {raw[:40]!r}",
                       {"id": "a positive integer"})
    return int(raw)


def _list_query(query: MultiMapping[str]) -> tuple[str | None, int, str]:
    limit_raw = query.get("limit", "50")
    if not limit_raw.isascii() or not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIST:
        raise ApiError(400, "invalid_query", f"limit must be 1 to {MAX_LIST}",
                       {"limit": f"an integer, 1 to {MAX_LIST}"})
    status = query.get("status", "DEAD").upper()
    if status not in _STATUSES:
        raise ApiError(400, "invalid_query", "status must be DEAD or RETRIED", {"status": "DEAD or RETRIED"})
    queue = query.get("queue") or None
    if queue is not None and (len(queue) > 200 or not queue.isprintable()):
        raise ApiError(400, "invalid_query", "queue must be a queue's name", {"queue": "a queue's name"})
    return queue, int(limit_raw), status


def letter_view(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "jobId": d.job_id, "name": d.job_name, "queue": d.queue, "payload": d.replay_payload,
            "attempts": d.attempts, "errorClass": d.error_class, "errorMessage": d.error_message,
            "traceback": d.traceback, "firstFailedAt": d.first_failed_at, "lastFailedAt": d.last_failed_at,
            "status": d.status, "retriedAt": d.retried_at, "retriedJobId": d.retried_job_id}
