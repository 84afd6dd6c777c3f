"""What a BullMQ job becomes in Workhorse (app/queue/bullmq/handover.py): job ids, the options
acted on, the refusals, and the settings the ingress refuses to start with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.config import Settings
from app.errors import AppError, InvalidPayload, SettingsError, UnknownJob
from app.jobs import build_registry
from app.queue.bullmq import mapped_queues
from app.queue.bullmq.fetcher import DRAIN_DELAY_S, bullmq_client
from app.queue.bullmq.handover import BullJob, failure_text, plan, retry_options, unreadable, workhorse_job_id


def bull(job_id: str, *, name: str = "probe", payload: Any = None, attempts_made: int = 0, priority: int = 0,
         opts: dict[str, Any] | None = None, refusal: AppError | None = None) -> BullJob:
    return BullJob(queue="intake-routing", id=job_id, name=name, payload=payload, opts=opts or {},
                   attempts_made=attempts_made, priority=priority, refusal=refusal)


@pytest.mark.parametrize(("job_id", "attempts_made", "expected"), [
    ("task-123", 0, "task-123"),  # the producer's own id, as it is
    ("42", 0, "bullmq:intake-routing:42"),  # made up by BullMQ: means nothing outside its queue
    ("repeat:abc:1700000000000", 0, "bullmq:intake-routing:repeat:abc:1700000000000"),  # a scheduler's
    ("task-123", 1, "task-123:run-2"),  # retried after it finished: run again, once
    ("42", 3, "bullmq:intake-routing:42:run-4"),
])
def test_workhorse_job_ids(job_id: str, attempts_made: int, expected: str) -> None:
    """A producer's jobId is the Workhorse id; BullMQ's own ids are namespaced; a re-run is a new id."""
    assert workhorse_job_id(bull(job_id, attempts_made=attempts_made)) == expected


@pytest.mark.parametrize(("opts", "expected"), [
    ({"attempts": 0}, {}),  # what the bullmq client writes for a job without options
    ({"attempts": 1}, {}),
    ({"attempts": 3, "backoff": {"type": "exponential", "delay": 5000}},
     {"attempts": 3, "backoff": {"type": "exponential", "delay": 5000}}),
    ({"backoff": 2000}, {"backoff": 2000}),
    ({"priority": 1, "delay": 500, "removeOnComplete": True}, {}),
])
def test_retry_options_are_picked_out(opts: dict[str, Any], expected: dict[str, Any]) -> None:
    """Only options that would make BullMQ retry are reported as superseded by the queue's policy."""
    assert retry_options(opts) == expected


@pytest.mark.parametrize(("result", "text"), [
    ({"error": "NotFound", "message": "row does not exist"}, "NotFound: row does not exist"),
    ("plain text", "plain text"),
])
def test_failure_text_is_the_class_and_message(result: Any, text: str) -> None:
    """A failed job's result becomes BullMQ's failedReason, which waitUntilFinished rejects with."""
    assert failure_text(result) == text


def test_plan_resolves_aliases_carries_priority_and_refuses_what_cannot_run(settings: Settings) -> None:
    """The job's own name behind an alias, the queue it runs on, BullMQ's priority carried; an
    unknown name, a bad payload and an unreadable record refused."""
    registry = build_registry(settings)
    handed = plan(registry, bull("t-1", name="db-probe", payload={"tag": "x"}, priority=3))
    assert (handed.job_id, handed.name, handed.queue, handed.priority) == ("t-1", "db_probe", "intake-routing", 3)
    assert handed.request.job_id == "t-1" and plan(registry, bull("t-2", payload={"tag": "y"})).priority is None
    with pytest.raises(UnknownJob):
        plan(registry, bull("t-3", name="nope", payload={}))
    with pytest.raises(InvalidPayload, match="tag: Field required"):
        plan(registry, bull("t-4", payload={}))
    with pytest.raises(InvalidPayload, match=r"\(job\): BullMQ's record"):
        plan(registry, bull("t-5", refusal=unreadable("probe", "JSONDecodeError")))


@pytest.mark.parametrize(("env", "message"), [
    ({"bullmq_queues": "intake-routing,nope"}, "invalid setting BULLMQ_QUEUES: unknown queue(s) nope"),
    ({"keep_result_s": 10}, "invalid setting KEEP_RESULT_S"),
    ({"keep_failed_s": 30, "job_lock_ttl_s": 20}, "keep it at least 60 s"),
])
def test_the_ingress_refuses_settings_it_cannot_work_with(make_settings: Callable[..., Settings],
                                                          env: dict[str, Any], message: str) -> None:
    """An unknown queue, or results kept too briefly for a re-delivery to read: start-up stops,
    naming the variable."""
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mapped_queues(make_settings(bullmq_prefix="bull", **env))


def test_bullmq_queues_default_to_every_queue(make_settings: Callable[..., Settings]) -> None:
    """Without BULLMQ_QUEUES every queue of the table is taken; with it, the names it lists."""
    settings = make_settings(bullmq_prefix="bull")
    assert mapped_queues(settings) == list(settings.queues.queues)
    assert mapped_queues(make_settings(bullmq_prefix="bull", bullmq_queues=" sla-monitor , ")) == ["sla-monitor"]


def test_the_library_client_waits_out_bullmqs_idle_wait() -> None:
    """redis-py 8 gives up on a reply after 5 s by default; BullMQ's idle wait (BZPOPMIN) blocks
    DRAIN_DELAY_S: the client the library gets must wait longer, or every idle wait fails."""
    client = bullmq_client("redis://127.0.0.1:6379/0")
    assert client.connection_pool.connection_kwargs["socket_timeout"] > DRAIN_DELAY_S
