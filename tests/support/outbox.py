"""The outbox as the web app writes it (plain SQL into job_outbox) and what the tests read back:
each row's status, its dispatch, the probes it ran, and a relay that hangs before its commit for
the crash test (run in a subprocess: python -c "... tests.support.outbox ...")."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue.enqueue import Enqueued, JobRequest
from app.queue.outbox import OutboxRelay
from app.runtime.startup import open_resources
from tests.support.jobs import recorded_runs

QUEUE = "intake-routing"
"""The queue the probe rows are written for."""

Db = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def insert_probes(db: Db, tags: list[str]) -> list[int]:
    """Probe jobs written the way the web app writes them: a plain multi-row INSERT."""
    rows = await db.fetch(
        "INSERT INTO job_outbox (job_name, payload, queue)"
        " SELECT 'probe', json_build_object('tag', t), $2 FROM unnest($1::text[]) AS t RETURNING id",
        tags, QUEUE)
    return [r["id"] for r in rows]


async def rows(res: Resources) -> dict[int, tuple[str, str | None]]:
    """Each outbox row's status and its job id (dispatched) or error (failed)."""
    found = await res.db.fetch("SELECT id, status, coalesce(dispatched_job_id, last_error) AS detail FROM job_outbox")
    return {r["id"]: (r["status"], r["detail"]) for r in found}


async def wait_dispatched(res: Resources, ids: list[int], timeout_s: float = 30.0) -> None:
    """Until every one of the rows `ids` is DISPATCHED."""
    async with asyncio.timeout(timeout_s):
        while await res.db.fetchval(
                "SELECT count(*) FROM job_outbox WHERE id = ANY($1::bigint[]) AND status <> 'DISPATCHED'", ids):
            await asyncio.sleep(0.02)


async def starts_once_done(res: Resources, tags: list[str], timeout_s: float = 60.0) -> collections.Counter[str]:
    """How often each probe started, read once every one of `tags` has finished."""
    async with asyncio.timeout(timeout_s):
        while True:
            runs = await recorded_runs(res)
            if {r["tag"] for r in runs if r["event"] == "done"} >= set(tags):
                return collections.Counter(r["tag"] for r in runs if r["event"] == "start")
            await asyncio.sleep(0.05)


def sample(res: Resources, name: str, **labels: str) -> float:
    """A metric's value in this process's registry (0 when it was never observed)."""
    return res.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    """The relay's loop in the background, stopped on exit."""
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


class HangingRelay(OutboxRelay):
    """A relay that writes its batch to Redis, says so on stdout, then hangs before its commit."""

    async def _enqueue(self, requests: list[JobRequest]) -> list[Enqueued | None]:
        enqueued = await super()._enqueue(requests)
        print(json.dumps({"enqueued": sum(1 for e in enqueued if e)}), flush=True)
        await asyncio.Event().wait()
        return enqueued


async def hang_after_enqueue() -> None:
    """The crash test's subprocess (settings from its environment, like any entry point)."""
    settings = Settings.load()
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        await HangingRelay(res).dispatch_batch()
