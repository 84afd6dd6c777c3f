"""Intake routing through the real worker, against an OpenAI-compatible server on 127.0.0.1
driven by the real `openai` client: confident, unsure, malformed and rate-limited answers, and no
model at all. Pure pipeline choice as a table."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.config import Settings
from app.jobs.intake import GENERAL_INTAKE, Pipeline, Verdict, choose_pipeline
from app.jobs.resources import Resources
from tests.fakes.openai import FakeOpenAI, Refusal
from tests.support.jobs import result_of
from tests.support.worker import in_process_worker

QUEUE = "intake-routing"
CHAT = "/v1/chat/completions"
SALES, SUPPORT = Pipeline("pl_sales", "Sales", "new business"), Pipeline("pl_support", "Support", "help")


async def seed(res: Resources, request_id: str = "ir_1", org: str = "org_1") -> None:
    """Two active pipelines (stages out of order), one inactive, and an intake request."""
    await res.db.execute(
        "INSERT INTO pipelines (id, org_id, name, description, default_assignee_id) VALUES"
        " ('pl_sales', $1, 'Sales', 'new business', 'user_sam'), ('pl_support', $1, 'Support', 'help', NULL)"
        " ON CONFLICT DO NOTHING", org)
    await res.db.execute("INSERT INTO pipelines (id, org_id, name, is_active) VALUES ('pl_old', $1, 'Old', false)"
                         " ON CONFLICT DO NOTHING", org)
    await res.db.execute(
        "INSERT INTO pipeline_stages (id, pipeline_id, name, position) VALUES ('st_won', 'pl_sales', 'Won', 5),"
        " ('st_lead', 'pl_sales', 'Lead', 1) ON CONFLICT DO NOTHING")
    await res.db.execute(
        "INSERT INTO intake_requests (id, org_id, source, subject, body) VALUES ($1, $2, 'web', 'Quote please',"
        " 'We want 40 seats of your product.')", request_id, org)


def verdict(pipeline_id: str | None, confidence: float) -> str:
    return json.dumps({"pipelineId": pipeline_id, "confidence": confidence, "reason": "mentions buying seats"})


async def route(res: Resources, request_id: str = "ir_1", org: str = "org_1", **extra: Any) -> Any:
    enqueued = await res.enqueuer.enqueue("route-intake", {"intakeRequestId": request_id, "orgId": org, **extra})
    return await result_of(res, enqueued, QUEUE)


@pytest.mark.parametrize(("answer", "expected"), [
    (None, (None, "default")),
    (Verdict(pipelineId="pl_sales", confidence=0.9, reason="r"), ("pl_sales", "ai")),
    (Verdict(pipelineId="pl_sales", confidence=0.7, reason="r"), ("pl_sales", "ai")),
    (Verdict(pipelineId="pl_sales", confidence=0.69, reason="r"), (None, "default")),
    (Verdict(pipelineId="pl_gone", confidence=0.99, reason="r"), (None, "default")),
    (Verdict(pipelineId=None, confidence=0.99, reason="r"), (None, "default")),
])
def test_choice_is_the_models_when_confident_else_general_intake(
        answer: Verdict | None, expected: tuple[str | None, str]) -> None:
    """A confident answer naming an active pipeline wins; anything else is General Intake (None)."""
    choice = choose_pipeline([SALES, SUPPORT], answer, min_confidence=0.7)
    assert ((choice.pipeline.id if choice.pipeline else None), choice.method) == expected


async def test_a_confident_answer_routes_to_that_pipelines_first_stage(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """The model is asked with a JSON schema listing the active pipelines by id; its confident
    choice gets the item, in the stage with the lowest position, assigned to the pipeline's owner."""
    await seed(res)
    fake_openai.script_chat(verdict("pl_sales", 0.92))
    async with in_process_worker(openai_settings(), [QUEUE]):
        result = await route(res, priority="high", source="web")
    item = await res.db.fetchrow("SELECT * FROM pipeline_items")
    request = await res.db.fetchrow("SELECT status, pipeline_id, routing FROM intake_requests")
    assert item is not None and request is not None
    assert result == {"success": True, "intakeRequestId": "ir_1", "pipelineId": "pl_sales",
                      "pipelineItemId": item["id"],
                      "assignedUserId": "user_sam", "routingMethod": "ai", "confidence": 0.92}
    assert (item["stage_id"], item["title"], item["priority"]) == ("st_lead", "Quote please", "high")
    assert request["status"] == "ASSIGNED" and request["routing"]["reason"] == "mentions buying seats"
    [body] = fake_openai.bodies(CHAT)
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["pipelineId"]["enum"] == ["pl_sales", "pl_support", None]
    assert "40 seats" in body["messages"][1]["content"]


async def test_a_low_confidence_answer_goes_to_a_new_general_intake(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """Below 0.7 the request goes to General Intake, created with a first stage."""
    await seed(res)
    fake_openai.script_chat(verdict("pl_sales", 0.4))
    async with in_process_worker(openai_settings(), [QUEUE]):
        result = await route(res)
    general = await res.db.fetchrow("SELECT id, is_default FROM pipelines WHERE name = $1", GENERAL_INTAKE)
    assert general is not None and general["is_default"]
    assert (result["pipelineId"], result["routingMethod"], result["confidence"]) == (general["id"], "default", 0.4)
    stage = await res.db.fetchval("SELECT stage_id FROM pipeline_items")
    assert stage == await res.db.fetchval("SELECT id FROM pipeline_stages WHERE pipeline_id = $1", general["id"])


async def test_malformed_and_refused_answers_are_asked_again_then_routed_by_default(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """Broken JSON, a wrong shape and a refusal use the three calls of one attempt; the request
    is routed to General Intake, never dead-lettered. A later valid answer is used."""
    await seed(res)
    await seed(res, "ir_2")
    fake_openai.script_chat("{not json", json.dumps({"pipeline": "pl_sales"}), Refusal(),
                            "```oops", verdict("pl_support", 0.95))
    async with in_process_worker(openai_settings(), [QUEUE]):
        first = await route(res)
        second = await route(res, "ir_2")
    assert (first["routingMethod"], first["confidence"]) == ("default", None)
    assert (second["routingMethod"], second["pipelineId"]) == ("ai", "pl_support")
    assert fake_openai.count(CHAT) == 5 and await res.dlq.list() == []


async def test_a_429_defers_the_job_then_the_answer_is_used(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """A 429 defers the job by at least a minute (no answer is invented meanwhile); the next attempt
    gets the model's answer."""
    await seed(res)
    fake_openai.fail_next(1, 429, {"Retry-After": "1"})
    fake_openai.script_chat(verdict("pl_sales", 0.9))
    async with in_process_worker(openai_settings(poll_fallback_ms=50), [QUEUE]):
        queued = await res.enqueuer.enqueue("route_intake", {"intakeRequestId": "ir_1", "orgId": "org_1"})
        assert queued is not None
        async with asyncio.timeout(10):  # until the 429's retry has moved the job a minute on
            while fake_openai.count(CHAT) < 1 or (await res.redis.zscore(QUEUE, queued.job_id) or 0) / 1000 < (
                    time.time() + 30):
                await asyncio.sleep(0.02)
        assert (await res.redis.zscore(QUEUE, queued.job_id) or 0) / 1000 - time.time() > 55
        assert await res.db.fetchval("SELECT status FROM intake_requests") == "ROUTING"
        await res.redis.zadd(QUEUE, {queued.job_id: int(time.time() * 1000)})
        result = await result_of(res, queued, QUEUE)
    assert (result["routingMethod"], result["pipelineId"]) == ("ai", "pl_sales")
    assert fake_openai.count(CHAT) == 2


async def test_without_a_model_every_request_lands_in_one_general_intake_once(
        settings: Settings, res: Resources) -> None:
    """No OPENAI_API_KEY: default routing. Ten concurrent jobs of a new org create one General
    Intake; running a job again returns the same item instead of a second one."""
    for n in range(10):
        await res.db.execute("INSERT INTO intake_requests (id, org_id, body) VALUES ($1, 'org_new', $2)",
                             f"ir_{n}", f"request {n}\x01")
    async with in_process_worker(settings, [QUEUE]):
        results = await asyncio.gather(*(route(res, f"ir_{n}", "org_new") for n in range(10)))
        again = await route(res, "ir_3", "org_new")
    assert await res.db.fetchval("SELECT count(*) FROM pipelines WHERE org_id = 'org_new'") == 1
    assert await res.db.fetchval("SELECT count(*) FROM pipeline_items") == 10
    assert {r["routingMethod"] for r in results} == {"default"}
    assert again == results[3]


async def test_a_missing_request_is_dead_lettered_and_bad_ids_are_refused(settings: Settings, res: Resources) -> None:
    """A request that does not exist is a dead letter after one attempt; an id with a NUL
    character is refused when enqueued."""
    from app.errors import InvalidPayload

    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("route_intake", {"intakeRequestId": "nope", "orgId": "org_1"})
        async with asyncio.timeout(10):
            while not await res.dlq.list():
                await asyncio.sleep(0.05)
    [dead] = await res.dlq.list()
    assert dead.attempts == 1 and "does not exist" in dead.error_message
    with pytest.raises(InvalidPayload, match=r"intakeRequestId|intake_request_id"):
        await res.enqueuer.enqueue("route_intake", {"intakeRequestId": "a\x00b", "orgId": "org_1"})
