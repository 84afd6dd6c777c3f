"""Route an intake request (web, email, API or chat) to the pipeline that should handle it.

The model (OpenAI or any compatible server) picks among the org's active pipelines with a
confidence and a reason, as structured output. A confident, valid choice wins; anything else —
low confidence, a malformed or refused answer after MODEL_JSON_ATTEMPTS calls, no model
configured, or the model still unreachable on the job's last attempt — goes to the org's
"General Intake" pipeline, created on first use. The pipeline item is unique per request, so a
job that runs twice never creates two items.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import structlog
from pydantic import BaseModel, Field, ValidationError

from app.errors import NotFound, TransientError
from app.jobs.resources import Job
from app.queue.payload import Payload
from app.queue.registry import JobSpec

log = structlog.get_logger(__name__)

GENERAL_INTAKE = "General Intake"
MAX_PROMPT_CHARS = 8000
_ID = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")

RoutingMethod = Literal["ai", "default"]


class RouteIntake(Payload):
    intake_request_id: str = _ID
    org_id: str = _ID
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    source: Literal["web", "email", "api", "chat"] | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    name: str
    description: str | None
    default_assignee_id: str | None = None


class Verdict(BaseModel):
    """The model's answer, validated."""

    pipeline_id: str | None = Field(alias="pipelineId")
    confidence: float = Field(ge=0, le=1)
    reason: str = Field(max_length=500)


@dataclass(frozen=True, slots=True)
class Choice:
    pipeline: Pipeline | None
    """None: the General Intake pipeline."""
    method: RoutingMethod
    confidence: float | None
    reason: str


def choose_pipeline(pipelines: Sequence[Pipeline], verdict: Verdict | None, *, min_confidence: float) -> Choice:
    """Pure core: the model's choice when it is confident and names an active pipeline, else the
    General Intake pipeline."""
    if verdict is None:
        return Choice(None, "default", None, "no usable model answer")
    by_id = {p.id: p for p in pipelines}
    if verdict.pipeline_id not in by_id:
        return Choice(None, "default", verdict.confidence, "the model named no active pipeline")
    if verdict.confidence < min_confidence:
        return Choice(None, "default", verdict.confidence, f"confidence below {min_confidence:g}")
    return Choice(by_id[verdict.pipeline_id], "ai", verdict.confidence, verdict.reason)


def routing_schema(pipelines: Sequence[Pipeline]) -> dict[str, Any]:
    """The JSON schema of the answer: one of the pipeline ids (or null), a confidence, a reason."""
    return {
        "type": "object",
        "properties": {
            "pipelineId": {"type": ["string", "null"], "enum": [*(p.id for p in pipelines), None]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string"},
        },
        "required": ["pipelineId", "confidence", "reason"],
        "additionalProperties": False,
    }


def accept_verdict(data: Any) -> Verdict | None:
    try:
        return Verdict.model_validate(data)
    except ValidationError:
        return None


_SYSTEM = (
    "You route incoming requests to the pipeline of the organization that should handle them. "
    "Answer with the id of the best pipeline (null if none fits), your confidence from 0 to 1, "
    "and a one-line reason."
)


def prompt(request: asyncpg.Record, pipelines: Sequence[Pipeline]) -> str:
    listed = "\n".join(f"- id {p.id}: {p.name}" + (f" — {p.description}" if p.description else "") for p in pipelines)
    text = f"Subject: {request['subject'] or ''}\n\n{request['body'] or ''}"[:MAX_PROMPT_CHARS]
    return f"Pipelines:\n{listed}\n\nRequest (source {request['source'] or 'unknown'}):\n{text}"


async def route_intake(job: Job, p: RouteIntake) -> dict[str, Any]:
    """Thin entry: ROUTING, ask the model, choose, create the item, ASSIGNED."""
    db = job.res.db
    request = await _start(db, p)
    item = await db.fetchrow("SELECT * FROM pipeline_items WHERE intake_request_id = $1", p.intake_request_id)
    if item is not None:  # this job ran before: report what it did
        routing = request["routing"] or {}
        return _result(p, item, routing.get("method", "default"), routing.get("confidence"))
    pipelines = await _active_pipelines(db, p.org_id)
    verdict = await _ask_model(job, request, pipelines) if pipelines else None
    choice = choose_pipeline(pipelines, verdict, min_confidence=job.res.settings.intake_min_confidence)
    pipeline = choice.pipeline or await ensure_general_intake(db, p.org_id)
    item = await _assign(db, p, request, pipeline, choice)
    log.info("intake_routed", intake_request_id=p.intake_request_id, pipeline_id=pipeline.id, method=choice.method)
    return _result(p, item, choice.method, choice.confidence)


async def _start(db: asyncpg.Pool, p: RouteIntake) -> asyncpg.Record:
    row = await db.fetchrow(
        "UPDATE intake_requests SET status = CASE WHEN status = 'ASSIGNED' THEN status ELSE 'ROUTING' END,"
        " priority = $3 WHERE id = $1 AND org_id = $2 RETURNING *", p.intake_request_id, p.org_id, p.priority)
    if row is None:
        raise NotFound(f"intake request {p.intake_request_id} of org {p.org_id} does not exist")
    return row


async def _active_pipelines(db: asyncpg.Pool, org_id: str) -> list[Pipeline]:
    rows = await db.fetch(
        "SELECT id, name, description, default_assignee_id FROM pipelines WHERE org_id = $1 AND is_active"
        " ORDER BY name, id", org_id)
    return [Pipeline(r["id"], r["name"], r["description"], r["default_assignee_id"]) for r in rows]


async def _ask_model(job: Job, request: asyncpg.Record, pipelines: Sequence[Pipeline]) -> Verdict | None:
    """The model's verdict; None without a model, after malformed answers, or when the model is
    still unreachable on the job's last attempt (then routing must not wait any longer)."""
    client = job.res.providers.openai
    if client is None:
        return None
    try:
        return await client.ask_json(system=_SYSTEM, user=prompt(request, pipelines), schema_name="pipeline_choice",
                                     schema=routing_schema(pipelines), accept=accept_verdict,
                                     attempts=job.res.settings.model_json_attempts)
    except TransientError as exc:
        if job.attempt < job.res.registry.policy(job.res.registry.spec(job.name), job.queue).attempts:
            raise
        log.warning("intake_model_unavailable", intake_request_id=request["id"], error=str(exc))
        return None


async def ensure_general_intake(db: asyncpg.Pool, org_id: str) -> Pipeline:
    """The org's General Intake pipeline, created (once, even under concurrent jobs) if missing."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO pipelines (id, org_id, name, description, is_default) VALUES ($1, $2, $3, $4, true)"
            " ON CONFLICT (org_id, name) DO NOTHING",
            f"pl_{uuid.uuid4().hex}", org_id, GENERAL_INTAKE, "Requests no other pipeline claimed")
        row = await conn.fetchrow(
            "SELECT id, name, description, default_assignee_id FROM pipelines WHERE org_id = $1 AND name = $2",
            org_id, GENERAL_INTAKE)
    assert row is not None  # inserted or found above
    return Pipeline(row["id"], row["name"], row["description"], row["default_assignee_id"])


async def _assign(db: asyncpg.Pool, p: RouteIntake, request: asyncpg.Record, pipeline: Pipeline,
                  choice: Choice) -> asyncpg.Record:
    routing = {"method": choice.method, "confidence": choice.confidence, "reason": choice.reason}
    async with db.acquire() as conn, conn.transaction():
        # A pipeline without stages gets a first one, so every item has a stage.
        await conn.execute(
            "INSERT INTO pipeline_stages (id, pipeline_id, name, position) SELECT $1 || ':new', $1, 'New', 0"
            " WHERE NOT EXISTS (SELECT 1 FROM pipeline_stages WHERE pipeline_id = $1)"
            " ON CONFLICT DO NOTHING", pipeline.id)
        stage = await conn.fetchrow(
            "SELECT id, position FROM pipeline_stages WHERE pipeline_id = $1 ORDER BY position LIMIT 1", pipeline.id)
        assert stage is not None
        await conn.execute(
            "INSERT INTO pipeline_items (id, org_id, pipeline_id, stage_id, stage_position, intake_request_id, title,"
            " data, assigned_user_id, priority) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (intake_request_id) DO NOTHING",
            f"pi_{uuid.uuid4().hex}", p.org_id, pipeline.id, stage["id"], stage["position"], p.intake_request_id,
            _title(request), {"source": p.source or request["source"], "routing": routing},
            pipeline.default_assignee_id, p.priority)
        await conn.execute(
            "UPDATE intake_requests SET status = 'ASSIGNED', pipeline_id = $2, routing = $3, routed_at = now()"
            " WHERE id = $1", p.intake_request_id, pipeline.id, routing)
        item = await conn.fetchrow("SELECT * FROM pipeline_items WHERE intake_request_id = $1", p.intake_request_id)
    assert item is not None
    return item


def _title(request: asyncpg.Record) -> str:
    text = (request["subject"] or (request["body"] or "").strip().split("\n", 1)[0]).strip()
    return text[:200] or f"Intake request {request['id']}"


def _result(p: RouteIntake, item: asyncpg.Record, method: str, confidence: float | None) -> dict[str, Any]:
    return {"success": True, "intakeRequestId": p.intake_request_id, "pipelineId": item["pipeline_id"],
            "pipelineItemId": item["id"], "assignedUserId": item["assigned_user_id"], "routingMethod": method,
            "confidence": confidence}


async def record_failure(job: Job, p: RouteIntake, exc: BaseException) -> None:
    """Dead-lettered: the request is FAILED with the error, unless it was assigned meanwhile."""
    await job.res.db.execute(
        "UPDATE intake_requests SET status = 'FAILED', routing = COALESCE(routing, '{}'::jsonb) || $2"
        " WHERE id = $1 AND status <> 'ASSIGNED'", p.intake_request_id, {"error": f"{type(exc).__name__}: {exc}"[:500]})


SPEC = JobSpec(name="route_intake", queue="intake-routing", aliases=("intake-routing",),
               payload=RouteIntake, run=route_intake,
               description="route an intake request to a pipeline (model or General Intake) and create the item",
               on_dead_letter=record_failure)
