"""Idempotency-Key on POST /jobs, against the real worker: one job per key within 24 h, however
often or however concurrently the request is sent; a refused request does not use up its key."""

from __future__ import annotations

import asyncio

from app.jobs.resources import Resources
from tests.support.api import QUEUE, ApiClient
from tests.support.worker import wait_for_runs


async def test_a_repeated_idempotency_key_enqueues_one_job(api: ApiClient, res: Resources) -> None:
    """The same Idempotency-Key returns the first response, marked replayed, and one job runs;
    sent concurrently, one request enqueues and the others replay it or are told to retry (409);
    the key with another body is 422; a bad key is 400."""
    body = {"name": "probe", "queue": QUEUE, "payload": {"tag": "idem"}}
    key = {"Idempotency-Key": "order-42-confirmation"}
    racing = await asyncio.gather(*(api.call("POST", "/jobs", json_body=body, headers=key) for _ in range(5)))
    [first] = [r for r in racing if r.status == 201 and "Idempotent-Replayed" not in r.headers]
    assert all(r.status == 409 or r.body == first.body for r in racing), [r.body for r in racing]
    replies = await asyncio.gather(*(api.call("POST", "/jobs", json_body=body, headers=key) for _ in range(5)))
    assert all(r.status == 201 and r.body == first.body for r in replies)
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in replies)
    await wait_for_runs(res, "idem", "done", 1)
    await asyncio.sleep(0.2)
    assert len(await wait_for_runs(res, "idem", "start", 1)) == 1
    other = await api.call("POST", "/jobs", json_body={**body, "payload": {"tag": "other"}}, headers=key)
    assert (other.status, other.error["code"]) == (422, "idempotency_key_reused")
    bad = await api.call("POST", "/jobs", json_body=body, headers={"Idempotency-Key": "has space"})
    assert (bad.status, bad.error["fields"].keys()) == (400, {"Idempotency-Key"})


async def test_an_invalid_body_does_not_burn_its_idempotency_key(api: ApiClient, res: Resources) -> None:
    """A refused request releases its key: the corrected body under the same key is enqueued."""
    key = {"Idempotency-Key": "k-1"}
    bad = await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "payload": {}}, headers=key)
    assert bad.status == 422
    good = await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "payload": {"tag": "k"}},
                          headers=key)
    assert good.status == 201 and good.body["jobs"][0]["duplicate"] is False
