"""What the dashboard's pages show, read in as few round trips as possible and returned as
typed values; the views only render them."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from app.config.queue_table import RateLimit
from app.errors import NotFound
from app.queue import codec, keys, stats
from app.queue.dead_letters import DeadLetter
from app.queue.replies import octets, scored, text
from app.web.dashboard.processes import WorkerProcess, live_processes
from app.web.dashboard.throughput import Throughput, sparkline
from app.web.state import WebState

if TYPE_CHECKING:
    from app.jobs.resources import Resources

STATES = ("waiting", "active", "delayed", "completed", "dead")
"""A queue's job lists: `dead` are its dead letters (failed for good)."""
LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class QueueRow:
    stats: stats.QueueStats
    dead: int
    processes: list[WorkerProcess]
    spark: str
    """SVG polyline points of the recent jobs/min ("" until two samples exist)."""
    per_minute: float | None
    unserved: bool
    """Unpaused, and no live process serves it (a warning)."""
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class Overview:
    queues: list[QueueRow]
    processes: list[WorkerProcess]
    cron: list[dict[str, Any]]
    breakers: dict[str, str]
    dead_total: int
    parked: int


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    name: str | None
    at_ms: int | None
    """Run-at (waiting, delayed), start (active), finish (completed) or last failure (dead), ms."""
    note: str = ""


@dataclass(slots=True)
class JobDetail:
    job_id: str
    described: dict[str, Any]
    payload: Any = None
    enqueued_ms: int | None = None
    dead_letter: DeadLetter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def all_queues(res: Resources) -> list[str]:
    return list(res.registry.table.queues)


async def overview(state: WebState, throughput: Throughput) -> Overview:
    throughput.watched()
    res = state.res
    names = all_queues(res)
    current, depth, procs, parked = await asyncio.gather(
        stats.read(res.redis, names), res.dlq.depth(), live_processes(res.redis, names), res.dlq.parked())
    unknown = any(p.queues is None for p in procs)
    rows = []
    for name in names:
        s = current[name]
        serving = [p for p in procs if p.queues is not None and name in p.queues]
        rates = throughput.per_minute(name)
        rows.append(QueueRow(s, depth.get(name, 0), serving, sparkline(rates), rates[-1] if rates else None,
                             unserved=not s.paused and not serving and not unknown,
                             rate_limit=res.settings.queues.queue(name).rate_limit))
    breakers = {p: st.name.lower().replace("_", "-") for p, st in res.breakers.states().items()}
    cron: list[dict[str, Any]] = await state.cron.describe()
    return Overview(rows, procs, cron, breakers, sum(depth.values()), len(parked))


async def _names(redis: Redis, ids: list[str]) -> dict[str, str]:
    """Job names from arq's job records, or from the results of jobs that have finished."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.get(keys.JOB_PREFIX + job_id)
            pipe.get(keys.RESULT_PREFIX + job_id)
        raw = await pipe.execute()
    out = {}
    for n, job_id in enumerate(ids):
        for data in raw[2 * n : 2 * n + 2]:
            try:
                name = codec.loads(data).get("f") if data else None
            except codec.NotJson:
                name = None
            if isinstance(name, str):
                out[job_id] = name
                break
    return out


async def _prioritized(redis: Redis, queue: str, limit: int) -> list[JobRow]:
    """The queue's waiting prioritised jobs, in the order they will run, each with its priority."""
    ids = [i for i, _ in scored(await redis.zrange(keys.prioritized_key(queue), 0, limit - 1, withscores=True))]
    found = await redis.hmget(keys.priorities_key(queue), ids) if ids else []
    return [JobRow(i, None, None, f"priority {text(p)}" if p else "") for i, p in zip(ids, found, strict=True)]


async def queue_jobs(res: Resources, queue: str, state: str, *, search: str = "",
                     limit: int = LIST_LIMIT) -> list[JobRow]:
    """Jobs of `queue` in `state`, newest work first; `search` keeps ids containing it."""
    redis, now = res.redis, int(time.time() * 1000)
    if state == "dead":
        letters = await res.dlq.list(queue=queue, limit=limit)
        rows = [JobRow(d.job_id, d.job_name, int(d.last_failed_at.timestamp() * 1000),
                       f"{d.error_class}: {d.error_message}"[:160]) for d in letters]
    elif state == "active":
        running = await stats.running_jobs(redis, [queue])
        rows = [JobRow(j.job_id, None, j.started_ms, j.process) for j in running]
    elif state == "completed":
        done = await redis.zrevrange(keys.completed_key(queue), 0, limit - 1, withscores=True)
        rows = [JobRow(i, None, int(score)) for i, score in scored(done)]
    else:
        lo, hi = ("-inf", now) if state == "waiting" else (f"({now}", "+inf")
        found = await redis.zrangebyscore(queue, lo, hi, start=0, num=limit, withscores=True)
        busy = {j.job_id for j in await stats.running_jobs(redis, [queue])}
        rows = [JobRow(i, None, int(score)) for i, score in scored(found) if i not in busy]
        if state == "waiting":  # after the jobs without a priority, as they will run
            rows += await _prioritized(redis, queue, limit)
    if search:
        rows = [r for r in rows if search.lower() in r.job_id.lower()]
    names = await _names(redis, [r.job_id for r in rows if r.name is None])
    return [JobRow(r.job_id, r.name or names.get(r.job_id), r.at_ms, r.note) for r in rows]


async def job_detail(res: Resources, job_id: str) -> JobDetail | None:
    """Everything known about one job: status and outcome, payload, its latest dead letter."""
    described = await res.enqueuer.job(job_id).describe()
    detail = JobDetail(job_id, described)
    raw = await res.redis.get(keys.JOB_PREFIX + job_id)
    if raw is not None:
        try:
            record = codec.loads(octets(raw))
            detail.payload = (record.get("a") or [None])[0]
            detail.enqueued_ms = record.get("et")
            detail.extra["name"] = record.get("f")
        except codec.NotJson as exc:
            detail.extra["undecodable"] = str(exc)
    row = await res.db.fetchrow(
        "SELECT * FROM dead_letters WHERE job_id = $1 ORDER BY id DESC LIMIT 1", job_id)
    if row is not None:
        detail.dead_letter = DeadLetter.from_row(row)
        if detail.payload is None:
            detail.payload = detail.dead_letter.replay_payload
    if described["status"] == "not_found" and detail.dead_letter is None:
        return None
    return detail


async def delete_dead_letter(res: Resources, dead_letter_id: int) -> bool:
    """Delete one dead letter; False when it was already gone."""
    try:
        await res.dlq.delete(dead_letter_id)
    except NotFound:
        return False
    return True


def pretty(value: Any) -> str:
    """JSON for a <pre>: indented, never raising."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)
