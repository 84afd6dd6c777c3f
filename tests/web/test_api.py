"""The HTTP API on the sidecar (/api/v1), against the real worker on 127.0.0.1: who may call it,
what it refuses and how (JSON naming the field), enqueueing over HTTP (jobs run and their results
read back), idempotency, and the OpenAPI document a Node app generates its client from."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.config import Settings
from app.jobs.resources import Resources
from app.queue.payload import MAX_PAYLOAD_BYTES
from tests.support.api import FULL, QUEUE, READ_ONLY, TOKENS, ApiClient, api_worker
from tests.support.worker import wait_for_runs


async def test_missing_or_wrong_token_is_401_and_names_the_scheme(api: ApiClient) -> None:
    """Without a token, with a wrong one, or with another scheme, every guarded route is 401 with
    a Bearer challenge; the right token passes."""
    for token, headers in ((None, {}), ("nope", {}), (None, {"Authorization": f"Basic {FULL}"}),
                           (FULL + "x", {}), (FULL[:-1], {})):
        reply = await api.call("GET", "/queues", token=token, headers=headers)
        assert reply.status == 401, (token, headers)
        assert reply.error["code"] == "unauthorized"
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.call("GET", "/queues")).status == 200
    for open_path in ("/health/live", "/metrics"):  # health and metrics never need a token
        async with api.session.get(f"http://127.0.0.1:{api.port}{open_path}") as r:
            assert r.status == 200, open_path


async def test_read_only_token_reads_but_cannot_act(api: ApiClient, res: Resources) -> None:
    """A `ro:` token may GET; enqueue, abort, pause and DLQ actions are 403 and change nothing."""
    assert (await api.call("GET", "/queues", token=READ_ONLY)).status == 200
    assert (await api.call("GET", "/openapi.json", token=READ_ONLY)).status == 200
    for method, path in (("POST", "/jobs"), ("DELETE", "/jobs/j1"), ("POST", f"/queues/{QUEUE}/pause"),
                         ("POST", "/dlq/1/retry"), ("DELETE", "/dlq/1"), ("POST", "/calendar/connections")):
        reply = await api.call(method, path, token=READ_ONLY, json_body={"name": "ping", "queue": QUEUE})
        assert reply.status == 403, (method, path, reply.body)
        assert reply.error["code"] == "forbidden" and "read-only" in reply.error["message"]
    assert await res.redis.zcard(QUEUE) == 0


async def test_api_is_off_without_api_token_and_says_so(make_settings: Callable[..., Settings]) -> None:
    """With API_TOKEN unset every API route is 404 `api_disabled` naming the setting, whatever the
    token; health stays open and the calendar push route still answers (it has its own check)."""
    async with api_worker(make_settings()) as api:
        for method, path in (("GET", "/queues"), ("POST", "/jobs"), ("GET", "/openapi.json"), ("GET", "/nope")):
            reply = await api.call(method, path, token="anything")
            assert (reply.status, reply.error["code"]) == (404, "api_disabled"), path
            assert "API_TOKEN" in reply.error["message"]
        async with api.session.get(f"http://127.0.0.1:{api.port}/health/live") as r:
            assert r.status == 200
        push = await api.call("POST", "/calendar/google/push", token=None)
        assert (push.status, push.error["code"]) == (400, "push_refused")


async def test_unknown_routes_and_methods_answer_json(api: ApiClient) -> None:
    """A path the API does not have is a JSON 404; a wrong method a JSON 405 with Allow."""
    missing = await api.call("GET", "/nothing-here")
    assert (missing.status, missing.error["code"]) == (404, "not_found")
    wrong = await api.call("PUT", "/queues")
    assert (wrong.status, wrong.error["code"]) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["Allow"]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


MALFORMED: list[tuple[str, bytes, int, str, str]] = [
    # (what, body, status, code, field named)
    ("not JSON", b"{name: probe", 400, "invalid_json", "(body)"),
    ("empty", b"", 400, "invalid_json", "(body)"),
    ("not UTF-8", b'{"name": "\xff"}', 400, "invalid_json", "(body)"),
    ("a raw NUL byte", b'{"name": "probe\x00"}', 400, "invalid_json", "(body)"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, 400, "invalid_json", "(body)"),
    ("NaN", b'{"name": "probe", "queue": "intake-routing", "payload": {"tag": "t", "x": NaN}}', 400,
     "invalid_json", "(body)"),
    ("an infinite number", b'{"name": "probe", "queue": "intake-routing", "payload": {"tag": "t", "x": 1e400}}', 400,
     "invalid_json", "(body)"),
    ("a number", b"42", 422, "invalid_payload", "(body)"),
    ("an empty list", b"[]", 422, "invalid_payload", "(body)"),
    ("a missing field", json.dumps({"name": "route_intake", "payload": {"intakeRequestId": "i1"}}).encode(),
     422, "invalid_payload", "orgId"),
    ("a wrong type", json.dumps({"name": "route_intake", "payload": {"intakeRequestId": ["x"], "orgId": "o"}}).encode(),
     422, "invalid_payload", "intakeRequestId"),
    ("a NUL in a value", json.dumps({"name": "probe", "queue": QUEUE, "payload": {"tag": "a\u0000b"}}).encode(),
     422, "invalid_payload", "tag"),
    ("a payload nested too deep", json.dumps({"name": "probe", "queue": QUEUE,
                                              "payload": {"tag": "t", "x": _nested(40)}}).encode(),
     400, "invalid_json", "(body)"),
    ("a payload that is not an object", json.dumps({"name": "probe", "queue": QUEUE, "payload": [1]}).encode(),
     422, "invalid_payload", "payload"),
    ("an unknown envelope field", json.dumps({"name": "probe", "queue": QUEUE, "delay": 5,
                                              "payload": {"tag": "t"}}).encode(), 422, "invalid_payload", "delay"),
    ("a negative delay", json.dumps({"name": "probe", "queue": QUEUE, "delayMs": -1, "payload": {"tag": "t"}}).encode(),
     422, "invalid_payload", "delayMs"),
    ("runAt without offset", json.dumps({"name": "probe", "queue": QUEUE, "runAt": "2030-01-01T10:00:00",
                                         "payload": {"tag": "t"}}).encode(), 422, "invalid_payload", "runAt"),
    ("a job id with a space", json.dumps({"name": "probe", "queue": QUEUE, "jobId": "a b",
                                          "payload": {"tag": "t"}}).encode(), 422, "invalid_payload", "jobId"),
    ("an unknown job", json.dumps({"name": "nope", "payload": {}}).encode(), 422, "unknown_job", "name"),
    ("an unknown queue", json.dumps({"name": "probe", "queue": "nope", "payload": {"tag": "t"}}).encode(),
     422, "invalid_payload", "queue"),
    ("the wrong queue", json.dumps({"name": "route_intake", "queue": "sla-monitor",
                                    "payload": {"intakeRequestId": "i", "orgId": "o"}}).encode(),
     422, "invalid_payload", "queue"),
]


@pytest.mark.parametrize(("what", "body", "status", "code", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_bodies_are_refused_naming_the_field(
        api: ApiClient, res: Resources, what: str, body: bytes, status: int, code: str, field: str) -> None:
    """Every malformed POST /jobs body is a JSON error with a code and the offending field, and
    enqueues nothing."""
    reply = await api.call("POST", "/jobs", data=body, headers={"Content-Type": "application/json"})
    assert (reply.status, reply.error["code"]) == (status, code), reply.body
    assert field in reply.error["fields"], reply.error
    assert await res.redis.zcard(QUEUE) == 0


async def test_oversized_body_is_413_before_it_is_read(make_settings: Callable[..., Settings]) -> None:
    """A body past API_MAX_BODY_BYTES is 413 naming the body, announced (Content-Length) or streamed
    in chunks; a payload past the engine's 1 MB inside a body that fits is 422."""
    async with api_worker(make_settings(api_token=TOKENS, api_max_body_bytes=2_000_000)) as api:
        big = json.dumps({"name": "probe", "queue": QUEUE, "payload": {"tag": "x" * 2_100_000}}).encode()
        reply = await api.call("POST", "/jobs", data=big)
        assert (reply.status, reply.error["code"]) == (413, "body_too_large")
        assert "(body)" in reply.error["fields"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b" " * 100_000

        async with api.session.post(f"http://127.0.0.1:{api.port}/api/v1/jobs", data=chunks(),
                                    headers={"Authorization": f"Bearer {FULL}"}) as r:
            assert r.status == 413
        payload = {"tag": "t", "blob": "x" * MAX_PAYLOAD_BYTES}
        reply = await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "payload": payload})
        assert (reply.status, reply.error["code"]) == (422, "invalid_payload")


async def test_a_job_enqueued_over_http_runs_within_milliseconds_and_its_result_is_read_back(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """POST /jobs answers 201 with the job's id and queue; with fallback polling at 10 s the
    worker still starts it at once (the enqueue woke it); GET /jobs/{id} shows the result."""
    async with api_worker(make_settings(api_token=TOKENS, poll_fallback_ms=10_000)) as api:
        sent = time.time()
        reply = await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "payload": {"tag": "h"}})
        assert reply.status == 201, reply.body
        [job] = reply.body["jobs"]
        assert (job["name"], job["queue"], job["duplicate"]) == ("probe", QUEUE, False)
        [start] = await wait_for_runs(res, "h", "start", 1, timeout_s=5)
        assert start["t"] - sent < 1.0
        async with asyncio.timeout(10):
            while (shown := await api.call("GET", f"/jobs/{job['jobId']}")).body["status"] != "complete":
                await asyncio.sleep(0.02)
        assert shown.body["result"] == {"tag": "h", "runs": 1}
        assert (shown.body["name"], shown.body["queue"], shown.body["attempts"]) == ("probe", QUEUE, 1)
        missing = await api.call("GET", "/jobs/never-was")
        assert (missing.status, missing.error["code"]) == (404, "job_not_found")


async def test_a_failed_job_shows_its_error(api: ApiClient, res: Resources) -> None:
    """A job that failed for good is `failed` with its error, not a result."""
    reply = await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "jobId": "bad-1",
                                                       "payload": {"tag": "bad", "failTimes": 9, "error": "permanent"}})
    assert reply.status == 201
    async with asyncio.timeout(10):
        while (shown := await api.call("GET", "/jobs/bad-1")).body["status"] in ("queued", "in_progress"):
            await asyncio.sleep(0.02)
    assert shown.body["status"] == "failed" and "result" not in shown.body
    assert "row does not exist" in json.dumps(shown.body["error"])


async def test_a_list_is_validated_whole_and_enqueued_in_one_go(api: ApiClient, res: Resources) -> None:
    """A list with one bad job enqueues nothing and names the bad job by index; fixed, every job
    is enqueued and runs; a job id already taken is reported as a duplicate."""
    jobs: list[dict[str, Any]] = [{"name": "probe", "queue": QUEUE, "payload": {"tag": f"l{n}"}} for n in range(5)]
    jobs[3]["payload"] = {}
    refused = await api.call("POST", "/jobs", json_body=jobs)
    assert (refused.status, refused.error["fields"]) == (422, {"[3].tag": "Field required"})
    assert await res.redis.zcard(QUEUE) == 0
    jobs[3] = {"name": "probe", "queue": QUEUE, "payload": {"tag": "l3"}, "jobId": "list-3"}
    done = await api.call("POST", "/jobs", json_body=jobs)
    assert done.status == 201 and [j["duplicate"] for j in done.body["jobs"]] == [False] * 5
    for n in range(5):
        await wait_for_runs(res, f"l{n}", "done", 1)
    again = await api.call("POST", "/jobs", json_body=jobs[3])
    assert again.body["jobs"] == [{"jobId": "list-3", "name": "probe", "queue": QUEUE, "runAtMs": None,
                                   "duplicate": True}]
    too_many = await api.call("POST", "/jobs", json_body=[jobs[0]] * 1001)
    assert (too_many.status, too_many.error["code"]) == (422, "invalid_payload")


async def test_deleting_a_queued_job_withdraws_it(api: ApiClient, res: Resources) -> None:
    """DELETE of a deferred job withdraws it (it never runs, GET says aborted); again is 404; a
    running job is 409 and runs to the end."""
    body = {"name": "probe", "queue": QUEUE, "jobId": "later", "delayMs": 60_000, "payload": {"tag": "later"}}
    assert (await api.call("POST", "/jobs", json_body=body)).status == 201
    assert (await api.call("GET", "/jobs/later")).body["status"] == "deferred"
    deleted = await api.call("DELETE", "/jobs/later")
    assert deleted.body == {"jobId": "later", "status": "aborted"}
    assert (await api.call("GET", "/jobs/later")).body["status"] == "aborted"
    assert (await api.call("DELETE", "/jobs/later")).status == 404
    running = {"name": "probe", "queue": QUEUE, "jobId": "busy", "payload": {"tag": "busy", "sleepMs": 800}}
    await api.call("POST", "/jobs", json_body=running)
    await wait_for_runs(res, "busy", "start", 1)
    refused = await api.call("DELETE", "/jobs/busy")
    assert (refused.status, refused.error["code"]) == (409, "job_running")
    await wait_for_runs(res, "busy", "done", 1)


async def test_a_body_that_stalls_is_cut_off_with_408(make_settings: Callable[..., Settings]) -> None:
    """A client that announces a body and goes silent mid-way is answered 408 once it has been
    silent for SIDECAR_HEADER_TIMEOUT_S, instead of holding the connection."""
    async with api_worker(make_settings(api_token=TOKENS, sidecar_header_timeout_s=0.5)) as api:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + FULL.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        writer.close()
    assert b" 408 " in status_line and time.monotonic() - started < 5
