"""The response shapes and paths of the OpenAPI document: what each handler of this package
answers, written out once (the request shapes come from the payload models, in openapi.py)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_ANY: dict[str, Any] = {}

RESPONSES: dict[str, dict[str, Any]] = {
    "Error": _obj(["error"], error=_obj(
        ["code", "message"], code=_STR, message=_STR,
        fields={"type": "object", "additionalProperties": _STR,
                "description": "field -> what is wrong; payload fields by their own names, `[i].` in a list"})),
    "EnqueuedJob": _obj(["jobId", "name", "queue", "runAtMs", "duplicate"], jobId=_STR, name=_STR, queue=_STR,
                        runAtMs={"type": ["integer", "null"], "description": "null for a duplicate"},
                        duplicate={"type": "boolean", "description": "a job with this id existed: nothing enqueued"}),
    "EnqueueResponse": _obj(["jobs"], jobs={"type": "array", "items": _ref("EnqueuedJob")}),
    "Job": _obj(["jobId", "status"], jobId=_STR, name={"type": ["string", "null"]}, queue={"type": ["string", "null"]},
                status={"enum": ["queued", "deferred", "in_progress", "complete", "failed", "aborted"]},
                progress=_ANY, attempts={"type": ["integer", "null"]}, result=_ANY, error=_ANY, finishedAt=_TIME),
    "AbortedJob": _obj(["jobId", "status"], jobId=_STR, status={"const": "aborted"}),
    "QueueStats": _obj(["queue", "waiting", "active", "delayed", "paused", "deadLetters"],
                       queue=_STR, waiting=_INT, active=_INT, delayed=_INT, completed=_INT, failed=_INT, retried=_INT,
                       deadLettered=_INT, skipped=_INT, paused=_BOOL, oldestWaitingAgeS={"type": ["number", "null"]},
                       deadLetters=_INT),
    "Queues": _obj(["queues"], queues={"type": "array", "items": _ref("QueueStats")}),
    "QueuePaused": _obj(["queue", "paused"], queue=_STR, paused=_BOOL),
    "DeadLetter": _obj(["id", "jobId", "name", "queue", "attempts", "status"],
                       id=_INT, jobId=_STR, name=_STR, queue=_STR, payload=_ANY, attempts=_INT, errorClass=_STR,
                       errorMessage=_STR, traceback={"type": ["string", "null"]}, firstFailedAt=_TIME,
                       lastFailedAt=_TIME, status={"enum": ["DEAD", "RETRIED"]}, retriedAt=_TIME,
                       retriedJobId={"type": ["string", "null"]}),
    "DeadLetters": _obj(["deadLetters"], deadLetters={"type": "array", "items": _ref("DeadLetter")}),
    "DeadLetterRetried": _obj(["deadLetterId", "jobId"], deadLetterId=_INT, jobId=_STR),
    "DeadLetterDeleted": _obj(["deadLetterId", "deleted"], deadLetterId=_INT, deleted=_BOOL),
    "PushAccepted": _obj(["status"], status=_STR, jobId={"type": ["string", "null"]}),
    "CalendarConnected": _obj(["connectionId"], connectionId=_STR, syncJobId={"type": ["string", "null"]}),
}

_ERRORS = {"400": "malformed request", "401": "missing or wrong bearer token", "403": "read-only token",
           "404": "not found, or the API is off (API_TOKEN unset)", "409": "conflict", "413": "body too large",
           "422": "invalid fields", "503": "Redis or PostgreSQL unavailable"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(op_id: str, summary: str, status: str, schema: str, *, errors: str = "401 404 503",
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        open_: bool = False) -> dict[str, Any]:
    responses = {status: _json(_ref(schema), summary)}
    responses.update({code: _json(_ref("Error"), _ERRORS[code]) for code in errors.split()})
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if open_:
        op["security"] = []
    return op


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_JOB_ID = _param("jobId", "path", _STR, "the job's id")
_QUEUE = _param("queue", "path", _STR, "a queue of config/queues.toml")
_LETTER = _param("id", "path", _INT, "the dead letter's id")
_WRITE = "401 403 404 422 503"


def paths(max_jobs: int) -> dict[str, Any]:
    many = {"type": "array", "items": _ref("EnqueueRequest"), "minItems": 1, "maxItems": max_jobs}
    idempotency = _param("Idempotency-Key", "header", {"type": "string", "maxLength": 255},
                         "the same key within 24 h returns the first response and enqueues nothing")
    goog = [_param(h, "header", _STR, "sent by Google", True)
            for h in ("X-Goog-Channel-ID", "X-Goog-Channel-Token", "X-Goog-Resource-State")]
    return {
        "/jobs": {"post": _op("enqueueJobs", "Enqueue one job or a list (all or nothing)", "201", "EnqueueResponse",
                              errors="400 401 403 404 409 413 422 503", params=[idempotency],
                              body={"oneOf": [_ref("EnqueueRequest"), many]})},
        "/jobs/{jobId}": {"parameters": [_JOB_ID],
                          "get": _op("getJob", "A job's status, progress, result or error", "200", "Job"),
                          "delete": _op("abortJob", "Withdraw a queued or deferred job (409 if running)", "200",
                                        "AbortedJob", errors="401 403 404 409 503")},
        "/queues": {"get": _op("listQueues", "Every queue's counts", "200", "Queues")},
        "/queues/{queue}/pause": {"parameters": [_QUEUE], "post": _op("pauseQueue", "Pause a queue everywhere",
                                                                      "200", "QueuePaused", errors=_WRITE)},
        "/queues/{queue}/resume": {"parameters": [_QUEUE], "post": _op("resumeQueue", "Resume a paused queue",
                                                                       "200", "QueuePaused", errors=_WRITE)},
        "/dlq": {"get": _op("listDeadLetters", "Dead letters, newest first", "200", "DeadLetters",
                            errors="400 401 404 503", params=[
                                _param("queue", "query", _STR, "only this queue's"),
                                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}, "≤ 500"),
                                _param("status", "query", {"enum": ["DEAD", "RETRIED"]}, "default DEAD")])},
        "/dlq/{id}/retry": {"parameters": [_LETTER], "post": _op("retryDeadLetter", "Enqueue a dead letter again",
                                                                 "200", "DeadLetterRetried", errors=_WRITE)},
        "/dlq/{id}": {"parameters": [_LETTER], "delete": _op("deleteDeadLetter", "Delete a dead letter", "200",
                                                             "DeadLetterDeleted", errors=_WRITE)},
        "/calendar/google/push": {"post": _op("googleCalendarPush", "Google events.watch notification (no bearer "
                                              "token; the channel token is checked)", "200", "PushAccepted",
                                              errors="400 403 404", params=goog, open_=True)},
        "/calendar/connections": {"post": _op("connectCalendar", "Store a newly authorised Google connection", "201",
                                              "CalendarConnected", errors="400 401 403 404 409 413 422 503",
                                              body=_ref("NewCalendarConnection"))},
        "/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {"schema": {}}}}}}},
    }
