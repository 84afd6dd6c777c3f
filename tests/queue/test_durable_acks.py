"""REDIS_MIN_REPLICAS_ACK: what Workhorse acknowledges survives the primary's death.

A primary and its replica, the replica fed through a TcpProxy that can hold the replication
stream back, as a partition between them does (tests/support/sentinel.py). The primary is killed right after the
acknowledgements and the replica promoted, as Sentinel would: without the option, enqueues
acknowledged while the replica heard nothing are gone; with it, no acknowledged enqueue is,
because the ones the replica could not confirm were refused instead (NotReplicated), and the API,
the outbox and the worker's finishes each hold back their acknowledgement the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue import keys
from app.queue.durability import NotReplicated
from app.runtime.startup import open_resources
from tests.support.http import wait_for_status
from tests.support.sentinel import SentinelGroup
from tests.support.worker import start_worker, wait_for_runs

EnvFactory = Callable[..., dict[str, str]]
TOKEN = "durable-acks-token"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SentinelGroup]:
    servers = SentinelGroup(tmp_path / "pair", sentinels=0, replication_proxy=True)
    servers.start()
    yield servers
    servers.stop()


def _env(make_env: EnvFactory, pair: SentinelGroup, replicas: int) -> dict[str, str]:
    return make_env(redis_url=f"redis://127.0.0.1:{pair.ports['primary']}/0", redis_min_replicas_ack=replicas,
                    redis_replicas_ack_timeout_ms=200, api_token=TOKEN, outbox_poll_interval_ms=50)


@asynccontextmanager
async def _client(env: dict[str, str]) -> AsyncIterator[Resources]:
    settings = Settings.load(env)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        yield res


async def _enqueue(res: Resources, tag: str) -> str | None:
    """A ping's id once its enqueue was acknowledged; None when it was refused as not replicated."""
    try:
        queued = await res.enqueuer.enqueue("ping", {"note": tag}, queue="sla-monitor")
    except NotReplicated:
        return None
    assert queued is not None
    return queued.job_id


async def test_acknowledged_enqueues_survive_the_primarys_death_only_with_the_option(
        make_env: EnvFactory, pair: SentinelGroup) -> None:
    """Ten enqueues while the replica hears everything, then ten with the option and ten without
    while the replication stream is held back; the primary dies, the replica is promoted. Every
    enqueue acknowledged with the option is there (the dropped ones were refused, not
    acknowledged); the ones acknowledged without it are lost."""
    assert pair.proxy is not None
    async with _client(_env(make_env, pair, 1)) as durable, _client(_env(make_env, pair, 0)) as plain:
        before = [await _enqueue(durable, f"before-{n}") for n in range(10)]
        assert all(before), "a replica that hears everything confirms every enqueue"
        pair.proxy.hold()
        durable_during = [await _enqueue(durable, f"durable-{n}") for n in range(10)]
        plain_during = [await _enqueue(plain, f"plain-{n}") for n in range(10)]
    pair.kill("primary")
    pair.proxy.sever()
    pair.promote_replica()

    survivor = pair.client("replica")
    acknowledged_with = [j for j in before + durable_during if j is not None]
    lost_with = [j for j in acknowledged_with if not survivor.exists(keys.JOB_PREFIX + j)]
    acknowledged_without = [j for j in plain_during if j is not None]
    lost_without = [j for j in acknowledged_without if not survivor.exists(keys.JOB_PREFIX + j)]
    print(f"\nREDIS_MIN_REPLICAS_ACK=1: acknowledged {len(acknowledged_with)}, refused "
          f"{durable_during.count(None)}, lost {len(lost_with)}; "
          f"without it: acknowledged {len(acknowledged_without)}, lost {len(lost_without)}")
    assert durable_during == [None] * 10 and lost_with == []
    assert len(acknowledged_without) == 10 and len(lost_without) == 10


async def test_the_api_the_outbox_and_finishes_wait_for_the_replica(
        make_env: EnvFactory, pair: SentinelGroup) -> None:
    """A worker with REDIS_MIN_REPLICAS_ACK=1 while the replica hears nothing: POST /api/jobs is
    503 not_replicated, an outbox row stays PENDING with the reason noted, and a job that ends
    then has its outcome held. Once the replica hears again: 201, the row DISPATCHED, the
    outcome written; all of it on the replica too."""
    import aiohttp

    assert pair.proxy is not None
    env = _env(make_env, pair, 1)
    port = int(env["HEALTH_PORT"])
    worker = await start_worker(env, "--queues", "sla-monitor")
    db = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await wait_for_status(port, "/health/ready", 200)
        async with _client(env) as res:
            slow = await res.enqueuer.enqueue("probe", {"tag": "held", "sleepMs": 700}, queue="sla-monitor")
            assert slow is not None
            await wait_for_runs(res, "held", "start", 1)
            pair.proxy.hold()

            headers = {"Authorization": f"Bearer {TOKEN}"}
            body = {"name": "ping", "payload": {"note": "api"}, "jobId": "api-durable", "queue": "sla-monitor"}
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/api/v1/jobs", json=body, headers=headers) as reply:
                    refused = (reply.status, await reply.json())
                assert refused[0] == 503 and refused[1]["error"]["code"] == "not_replicated", refused

                row = await db.fetchval("INSERT INTO job_outbox (job_name, payload, queue) VALUES "
                                        "('ping', $1, 'sla-monitor') RETURNING id", json.dumps({"note": "outbox"}))
                async with asyncio.timeout(20):
                    while not (await db.fetchval("SELECT last_error FROM job_outbox WHERE id = $1", row) or ""):
                        await asyncio.sleep(0.05)
                pending = await db.fetchrow("SELECT status, last_error FROM job_outbox WHERE id = $1", row)
                assert pending is not None and pending["status"] == "PENDING"
                assert "REDIS_MIN_REPLICAS_ACK" in pending["last_error"]
                held = await worker.wait_for_event("job_outcome_held", job_id=slow.job_id, timeout_s=20)
                assert "REDIS_MIN_REPLICAS_ACK" in held["error"]

                pair.proxy.release()
                async with http.post(f"http://127.0.0.1:{port}/api/v1/jobs", json=body, headers=headers) as reply:
                    assert reply.status == 201, await reply.text()
            await worker.wait_for_event("job_outcome_written", job_id=slow.job_id, timeout_s=20)
            async with asyncio.timeout(20):
                while await db.fetchval("SELECT status FROM job_outbox WHERE id = $1", row) != "DISPATCHED":
                    await asyncio.sleep(0.05)
            dispatched = await db.fetchval("SELECT dispatched_job_id FROM job_outbox WHERE id = $1", row)
            replica = pair.client("replica")
            assert replica.exists(keys.RESULT_PREFIX + slow.job_id)
            assert replica.exists(keys.JOB_PREFIX + "api-durable") or replica.exists(keys.RESULT_PREFIX + "api-durable")
            assert replica.exists(keys.JOB_PREFIX + dispatched) or replica.exists(keys.RESULT_PREFIX + dispatched)
    finally:
        await db.close()
        assert await worker.stop() == 0
