"""arq's two records as JSON: a job's (what an enqueue writes) and a finished job's result.

A job record is `{"t": try or null, "f": name, "a": [payload], "k": {}, "et": enqueued ms}`; a
result record is the job's fields plus `"s"` (success), `"r"` (the return value, or for a
failure `{"error": class, "message": text}`), `"st"`/`"ft"` (start and finish ms), `"q"` (queue)
and `"id"`. Stock arq clients read both with `job_deserializer=json.loads` (README: arq clients).

arq pickles by default, which lets anyone who can write to Redis run code in the worker. This
codec writes JSON and refuses anything else, so a pickled payload fails to decode and ends in
the dead-letter queue instead of executing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import json
import uuid
from pathlib import PurePath
from typing import Annotated, Any, NotRequired, cast

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it, not typing.TypedDict, before 3.12

from app.queue import tracing

# Pickle protocol 2+ streams start with b"\x80"; JSON documents start with "{".
_PICKLE_MARK = 0x80
log = structlog.get_logger(__name__)


class NotJson(ValueError):
    """Bytes in Redis that are not a JSON object: refused, never unpickled."""


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, BaseException):
        # Results of failed jobs keep the error's class and text instead of a pickle.
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, uuid.UUID | decimal.Decimal | PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def dump_job(name: str, payload_json: bytes, kwargs: dict[str, Any], enqueued_ms: int) -> bytes:
    """A new job's record in arq's shape (what `arq.jobs.serialize_job` writes with this codec:
    try count null, name, the payload as the only argument, keyword arguments, enqueue time),
    from the payload already written as JSON, so the payload is serialized once."""
    return b"".join((_record_head(name), payload_json, b'],"k":', dumps(kwargs) if kwargs else b"{}",
                     b',"et":', b"%d}" % enqueued_ms))


def failure(error: str, message: str) -> dict[str, str]:
    """A failed job's `r`: its error's class and text. arq's client, handed a failure it cannot
    raise as it is, raises SerializationError around it, whose text then reads
    "{'error': 'PermanentError', 'message': '...'}" (README: arq clients)."""
    return {"error": error, "message": message}


def dump_result(*, name: str, args: list[Any], kwargs: dict[str, Any], attempt: int, enqueued_ms: int,
                success: bool, result: Any, started_ms: int, finished_ms: int, queue: str, job_id: str) -> bytes:
    """A finished job's result record, in arq's shape (what its `serialize_result` writes). A return
    value JSON cannot hold makes the job a failure saying so, as arq does."""
    record = {"t": attempt, "f": name, "a": args, "k": kwargs, "et": enqueued_ms, "s": success, "r": result,
              "st": started_ms, "ft": finished_ms, "q": queue, "id": job_id}
    try:
        return dumps(record)
    except (TypeError, ValueError) as exc:
        why = str(exc)
    log.warning("job_result_not_serializable", queue=queue, job=name, job_id=job_id, error=why)
    record.update(s=False, r=failure("SerializationError", f"unable to serialize result: {why}"))
    return dumps(record)


@functools.lru_cache(maxsize=1024)  # one entry per job name
def _record_head(name: str) -> bytes:
    return b'{"t":null,"f":' + dumps(name) + b',"a":['


def loads(data: bytes) -> Any:
    if data[:1] and data[0] == _PICKLE_MARK:
        raise NotJson("payload is a pickle, not JSON; refusing to unpickle it")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotJson(f"payload is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # written past the enqueuer's depth limit, straight into Redis
        raise NotJson("payload is nested too deeply to decode") from exc
    if not isinstance(value, dict):
        raise NotJson("payload is not a JSON object")
    return value


@with_config(ConfigDict(strict=True))
class _Record(TypedDict):
    """A well-formed record, as job_shape_problem() describes it (its `k` aside)."""

    t: int | None
    f: str
    a: Annotated[list[dict[str, Any] | None], Field(max_length=1)]
    k: NotRequired[dict[str, str] | None]
    et: int


_RECORD = TypeAdapter(_Record)


def loads_job(data: bytes) -> dict[str, Any]:
    """A job record as the worker reads it: JSON in arq's shape, or NotJson naming what is wrong.

    arq trusts the record: a non-numeric try count or enqueue time, extra positional arguments or
    keyword arguments would raise outside its error handling and loop forever (or be dropped).
    Checked here, every malformed record fails to decode and is dead-lettered once.

    A well-formed record is parsed and checked in one pass by pydantic-core, which costs a
    fraction of json.loads plus the checks in Python on a job's path to its start; anything it
    refuses is decoded again the slow way, which names the problem."""
    try:
        record = cast(dict[str, Any], _RECORD.validate_json(data))
    except ValidationError:
        pass
    else:
        if not record.get("k") or tracing.is_trace_kwargs(record["k"]):
            return record
    job: dict[str, Any] = loads(data)
    problem = job_shape_problem(job)
    if problem:
        raise NotJson(f"malformed job record: {problem}")
    return job


def job_shape_problem(job: dict[str, Any]) -> str | None:
    """Why a decoded job record cannot be run, or None: {f: name, a: [payload], k: {}, t, et}
    (`k` may carry the enqueuer's trace context instead: {"traceparent": "00-…"})."""
    if not isinstance(job.get("f"), str):
        return "'f' (the job name) must be a string"
    args, kwargs = job.get("a"), job.get("k", {})
    if not isinstance(args, list) or len(args) > 1:
        return "'a' must be a list holding at most the payload"
    if args and not isinstance(args[0], dict | None):
        return "'a' must hold a JSON object payload"
    if kwargs not in ({}, None) and not tracing.is_trace_kwargs(kwargs):  # tracing: {"traceparent": "00-…"}
        return "'k' (keyword arguments) must be empty or hold only a 'traceparent' string"
    if not _is_int(job.get("et")):
        return "'et' (enqueue time, ms) must be an integer"
    if "t" not in job or (job["t"] is not None and not _is_int(job["t"])):
        return "'t' (try count) must be present: an integer or null"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
