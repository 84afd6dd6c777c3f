"""Writing jobs to the outbox from Python, inside the caller's own transaction (the web app
writes the same rows in SQL; see the README)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app.errors import UnknownJob
from app.queue import priorities
from app.queue.enqueue import JobRequest
from app.queue.outbox import sql
from app.queue.payload import Payload
from app.queue.registry import Registry

Db: TypeAlias = asyncpg.Connection | PoolConnectionProxy


async def put(conn: Db, registry: Registry, requests: Sequence[JobRequest]) -> list[int]:
    """Write jobs to the outbox inside the caller's transaction; the relay enqueues them once it
    commits. Validated first, all or nothing, like Enqueuer.enqueue_many (UnknownJob,
    InvalidPayload). `defer_s` becomes a `run_at` from now; `replace_result` is refused."""
    now = dt.datetime.now(dt.UTC)
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for r in requests:
        if r.replace_result:
            raise ValueError("an outbox row cannot replace a kept result (replace_result)")
        spec, parsed, _ = registry.validate(_job_name(registry, r), r.payload, r.queue)
        run_at = r.run_at or (now + dt.timedelta(seconds=r.defer_s) if r.defer_s else None)
        row = (spec.name, json.dumps(parsed.to_json(), separators=(",", ":")), r.queue, r.job_id, run_at,
               priorities.checked(r.priority, spec.name))
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    if not requests:
        return []
    return [r["id"] for r in await conn.fetch(sql.INSERT, *columns)]


def _job_name(registry: Registry, r: JobRequest) -> str:
    """The request's job name; a typed request (`JobRequest.of`) is named by its payload model."""
    try:
        return registry.spec(r.name).name
    except UnknownJob:
        if isinstance(r.payload, Payload):
            return registry.spec_for(r.payload).name
        raise
