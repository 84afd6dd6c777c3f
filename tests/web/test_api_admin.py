"""The HTTP API's operator side, against the real worker: queues paused and resumed, dead
letters listed, retried and deleted, Google's calendar push (no bearer token), calendar
connections stored encrypted, and the OpenAPI document (valid 3.1, every registered job)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet

from app.calendar import connections
from app.calendar.push import token_digest
from app.calendar.tokens import TokenCipher
from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control
from app.web.api.openapi import request_name
from app.web.api.schemas import RESPONSES
from tests.support.api import FULL, QUEUE, READ_ONLY, TOKENS, ApiClient, api_worker
from tests.support.worker import cli, wait_for_runs

KEY = Fernet.generate_key().decode()


async def test_pause_and_resume_through_the_api_reach_every_process(
        api: ApiClient, res: Resources, make_env: Callable[..., dict[str, str]]) -> None:
    """POST /queues/{q}/pause puts the queue in control.paused() (what every process reads) and
    GET /queues shows it; a job enqueued meanwhile runs after /resume; an unknown queue is 404."""
    paused = await api.call("POST", f"/queues/{QUEUE}/pause")
    assert paused.body == {"queue": QUEUE, "paused": True}
    assert await control.paused(res.redis) == {QUEUE}
    listed = {q["queue"]: q for q in (await api.call("GET", "/queues", token=READ_ONLY)).body["queues"]}
    assert listed[QUEUE]["paused"] is True and set(listed) == set(res.settings.queues.queues)
    assert {"waiting", "active", "delayed", "deadLetters", "oldestWaitingAgeS"} <= listed[QUEUE].keys()
    # One naming style in every JSON output: `workhorse queues --json` has the API's keys, and more.
    code, out = await cli(make_env(), "queues", "--json")
    shown = json.loads(out)[QUEUE]
    assert code == 0 and listed[QUEUE].keys() <= shown.keys()
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", key) for key in shown), sorted(shown)
    await api.call("POST", "/jobs", json_body={"name": "probe", "queue": QUEUE, "payload": {"tag": "held"}})
    resumed = await api.call("POST", f"/queues/{QUEUE}/resume")
    assert resumed.body == {"queue": QUEUE, "paused": False}
    assert await control.paused(res.redis) == set()
    await wait_for_runs(res, "held", "done", 1)
    unknown = await api.call("POST", "/queues/nope/pause")
    assert (unknown.status, unknown.error["code"]) == (404, "unknown_queue")
    assert await control.paused(res.redis) == set()


async def _dead(res: Resources, job_id: str, tag: str) -> int:
    letter_id = await res.dlq.put(job_id=job_id, job_name="probe", queue=QUEUE, payload={"tag": tag}, attempts=3,
                                  error_class="TransientError", error_message="failed on purpose")
    assert letter_id is not None
    return letter_id


async def test_dead_letters_are_listed_retried_and_deleted(api: ApiClient, res: Resources) -> None:
    """GET /dlq lists letters with payload and error; POST /dlq/{id}/retry runs the job again under
    its id and the letter becomes RETRIED; DELETE /dlq/{id} removes one letter; ids that are not
    there, or not numbers, are 404; a bad limit is 400 naming it."""
    first, second = await _dead(res, "dl-1", "dl1"), await _dead(res, "dl-2", "dl2")
    listed = (await api.call("GET", "/dlq", token=READ_ONLY)).body["deadLetters"]
    assert {d["id"] for d in listed} == {first, second}
    one = next(d for d in listed if d["id"] == first)
    assert (one["jobId"], one["name"], one["payload"], one["errorClass"]) == ("dl-1", "probe", {"tag": "dl1"},
                                                                             "TransientError")
    retried = await api.call("POST", f"/dlq/{first}/retry")
    assert retried.body == {"deadLetterId": first, "jobId": "dl-1"}
    await wait_for_runs(res, "dl1", "done", 1)
    assert [d["id"] for d in (await api.call("GET", "/dlq?status=RETRIED")).body["deadLetters"]] == [first]
    assert (await api.call("POST", f"/dlq/{first}/retry")).status == 404
    assert (await api.call("DELETE", f"/dlq/{second}")).body == {"deadLetterId": second, "deleted": True}
    assert (await api.call("GET", "/dlq")).body["deadLetters"] == []
    for path in (f"/dlq/{second}", "/dlq/abc", "/dlq/-1"):
        assert (await api.call("DELETE", path)).status == 404, path
    bad = await api.call("GET", "/dlq?limit=lots")
    assert (bad.status, list(bad.error["fields"])) == (400, ["limit"])


async def test_calendar_push_answers_without_a_bearer_token(make_settings: Callable[..., Settings],
                                                           res: Resources) -> None:
    """Google's push route needs no Authorization: a push with the channel's token enqueues an
    incremental sync; a wrong channel token is 403 and an unknown channel 404, as JSON."""
    await connections.store(res.db, TokenCipher([KEY]), connections.NewConnection(
        "conn-1", "org-1", "user-1", "access", "refresh", dt.datetime(2030, 1, 1, tzinfo=dt.UTC)))
    await connections.store_watch(res.db, "conn-1", channel_id="chan-1", resource_id="res-1",
                                  token_sha256=token_digest("chan-secret"), expires_at=None)
    headers = {"X-Goog-Channel-ID": "chan-1", "X-Goog-Channel-Token": "chan-secret",
               "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "res-1"}
    async with api_worker(make_settings(api_token=TOKENS)) as api:
        accepted = await api.call("POST", "/calendar/google/push", token=None, headers=headers)
        assert accepted.status == 200, accepted.body
        assert accepted.body["jobId"] == connections.sync_job_id("conn-1", full=False)
        assert (await api.call("GET", f"/jobs/{accepted.body['jobId']}")).body["status"] == "queued"
        wrong = await api.call("POST", "/calendar/google/push", token=None,
                               headers={**headers, "X-Goog-Channel-Token": "guess"})
        assert (wrong.status, wrong.error["code"]) == (403, "push_refused")
        unknown = await api.call("POST", "/calendar/google/push", token=None,
                                 headers={**headers, "X-Goog-Channel-ID": "chan-2"})
        assert unknown.status == 404


async def test_a_calendar_connection_is_stored_encrypted_and_errors_never_echo_tokens(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """POST /calendar/connections stores the connection with its tokens encrypted and, with
    `sync`, enqueues a full sync; a bad body is 422 naming fields without their values; without
    CALENDAR_TOKEN_KEYS it is 503 and nothing is stored."""
    body: dict[str, Any] = {"id": "conn-9", "orgId": "org-9", "userId": "user-9", "accessToken": "ya29.SECRET",
                            "refreshToken": "1//REFRESH-SECRET", "expiresAt": "2030-01-01T10:00:00Z", "sync": True}
    async with api_worker(make_settings(api_token=TOKENS)) as api:
        off = await api.call("POST", "/calendar/connections", json_body=body)
        assert (off.status, off.error["code"]) == (503, "calendar_not_configured")
    assert await res.db.fetchval("SELECT count(*) FROM calendar_connections") == 0
    async with api_worker(make_settings(api_token=TOKENS, calendar_token_keys=KEY)) as api:
        bad = await api.call("POST", "/calendar/connections",
                             json_body={**body, "refreshToken": "", "expiresAt": "2030-01-01T10:00:00"})
        assert (bad.status, set(bad.error["fields"])) == (422, {"refreshToken", "expiresAt"})
        assert "SECRET" not in json.dumps(bad.body)
        stored = await api.call("POST", "/calendar/connections", json_body=body)
        assert stored.status == 201, stored.body
        assert stored.body == {"connectionId": "conn-9", "syncJobId": connections.sync_job_id("conn-9", full=True)}
    row = await res.db.fetchrow("SELECT access_token_enc, status FROM calendar_connections WHERE id = 'conn-9'")
    assert row is not None and row["status"] == "ACTIVE" and b"SECRET" not in row["access_token_enc"]
    assert await res.enqueuer.job(stored.body["syncJobId"]).status() == "queued"


async def test_openapi_document_is_valid_3_1_and_lists_every_registered_job(api: ApiClient, res: Resources) -> None:
    """/openapi.json is an OpenAPI 3.1 document that openapi-spec-validator accepts; its request
    union has one schema per registered job, discriminated by `name`, whose payload is the job's
    model with camelCase names; a body the API accepts validates against it."""
    validators = pytest.importorskip("openapi_spec_validator")
    schema_validator = pytest.importorskip("openapi_schema_validator")
    reply = await api.call("GET", "/openapi.json")
    doc = reply.body
    assert doc["openapi"].startswith("3.1")
    validators.validate(doc)
    schemas = doc["components"]["schemas"]
    mapping = schemas["EnqueueRequest"]["discriminator"]["mapping"]
    assert set(mapping) == set(res.registry.names())
    for name in res.registry.names():
        assert mapping[name] == f"#/components/schemas/{request_name(name)}"
        assert schemas[request_name(name)]["properties"]["name"]["const"] == name
    assert {"documentId", "orgId", "performOCR"} <= schemas["ProcessDocument"]["properties"].keys()
    # Writers' schemas: required is what has no default, and no property has a `default`, which
    # openapi-typescript would type as always present (tests/web/test_readme_node.py compiles against it).
    assert schemas["ProcessDocument"]["required"] == ["documentId", "orgId"]
    assert schemas["ProcessDocument"]["properties"]["performOCR"]["description"] == "default true"
    requests = [s for name, s in schemas.items() if name not in RESPONSES]
    assert [p for s in requests for p in s.get("properties", {}).values() if "default" in p] == []
    assert doc["paths"]["/calendar/google/push"]["post"]["security"] == []
    union = {**doc, "$ref": "#/components/schemas/EnqueueRequest"}
    good = {"name": "route_intake", "payload": {"intakeRequestId": "i1", "orgId": "o1"}}
    schema_validator.validate(good, union, cls=schema_validator.OAS31Validator)
    route_intake = {**doc, "$ref": f"#/components/schemas/{request_name('route_intake')}"}
    with pytest.raises(Exception, match="'orgId' is a required property"):
        schema_validator.validate({**good, "payload": {"intakeRequestId": "i1"}}, route_intake,
                                  cls=schema_validator.OAS31Validator)
    unauthorised = await api.call("GET", "/openapi.json", token=None)
    assert unauthorised.status == 401
    assert FULL not in json.dumps(doc)
