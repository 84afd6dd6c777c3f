"""The BullMQ ingress with the web app's own producer: jobs added with the real bullmq npm client
(`add`, `addBulk`) run in Workhorse, and `job.waitUntilFinished(queueEvents)` tells their outcome."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from app.config import Settings
from app.jobs.resources import Resources
from app.runtime.process import Process
from tests.support.bullmq_node import BullmqNode, bullmq_node
from tests.support.jobs import RUNS_KEY
from tests.support.services import ServiceUrls
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"


def ingress_settings(make_settings: Callable[..., Settings]) -> Settings:
    """A worker of QUEUE alone, taking BullMQ's jobs of QUEUE alone (each test starts one)."""
    return make_settings(bullmq_prefix="bull", bullmq_queues=QUEUE, workhorse_queues=QUEUE)


@pytest.fixture
async def worker(make_settings: Callable[..., Settings]) -> AsyncIterator[Process]:
    async with in_process_worker(ingress_settings(make_settings), [QUEUE]) as process:
        yield process


@pytest.fixture
async def node(clean: ServiceUrls) -> AsyncIterator[BullmqNode]:
    async with bullmq_node(clean.redis_url) as client:
        await client.call("listen", queue=QUEUE)
        yield client


async def runs(res: Resources, tag: str) -> list[dict[str, object]]:
    return [r for r in map(json.loads, await res.redis.lrange(RUNS_KEY, 0, -1)) if r["tag"] == tag]


async def test_added_job_runs_and_wait_until_finished_resolves_with_its_return_value(
        worker: Process, node: BullmqNode, res: Resources) -> None:
    """`queue.add` without a jobId: the job runs once in Workhorse and waitUntilFinished resolves
    with what it returned; BullMQ's made-up id becomes `bullmq:<queue>:<id>`."""
    bullmq_id = await node.add(QUEUE, "probe", {"tag": "plain"})
    assert await node.wait(QUEUE, bullmq_id) == {"resolved": {"tag": "plain", "runs": 1}}
    [run] = [r for r in await runs(res, "plain") if r["event"] == "start"]
    assert run["jobId"] == f"bullmq:{QUEUE}:{bullmq_id}"
    state = await node.state(QUEUE, bullmq_id)
    assert state["state"] == "completed" and state["returnvalue"] == {"tag": "plain", "runs": 1}


async def test_failed_job_rejects_wait_until_finished_with_its_error(
        worker: Process, node: BullmqNode, res: Resources) -> None:
    """A job that fails for good fails its BullMQ job with "ErrorClass: message", at once (no
    BullMQ retry, whatever `attempts` says), and waitUntilFinished rejects with that text."""
    bullmq_id = await node.add(QUEUE, "probe", {"tag": "doomed", "failTimes": 5, "error": "permanent"},
                               jobId="doomed-1", attempts=3, backoff={"type": "exponential", "delay": 5000})
    assert await node.wait(QUEUE, bullmq_id) == {"rejected": "NotFound: doomed: row does not exist"}
    state = await node.state(QUEUE, bullmq_id)
    assert state["state"] == "failed" and state["attemptsMade"] == 1 and state["stacktrace"] == []
    assert len(await runs(res, "doomed")) == 2  # start, fail: the queue's policy does not retry a permanent error
    await wait_for_runs(res, "doomed", "fail", 1)


async def test_a_jobid_is_the_workhorse_job_id_and_dedups_against_every_way_in(
        worker: Process, node: BullmqNode, res: Resources) -> None:
    """`jobId: task-7` is the Workhorse job `task-7`: a BullMQ job added while a Workhorse job of that
    id exists (enqueued over another path) waits for it instead of running it again, and adding
    the same jobId twice to BullMQ is BullMQ's own no-op."""
    await res.enqueuer.enqueue("probe", {"tag": "seven", "sleepMs": 300}, queue=QUEUE, job_id="task-7")
    first = await node.add(QUEUE, "probe", {"tag": "seven"}, jobId="task-7")
    again = await node.add(QUEUE, "probe", {"tag": "seven"}, jobId="task-7")
    assert first == again == "task-7"
    assert await node.wait(QUEUE, "task-7") == {"resolved": {"tag": "seven", "runs": 1}}
    assert [r["jobId"] for r in await runs(res, "seven") if r["event"] == "start"] == ["task-7"]


async def test_a_jobid_taken_by_another_job_fails_instead_of_reporting_its_outcome(
        worker: Process, node: BullmqNode, res: Resources) -> None:
    """A jobId that names a Workhorse job of another kind (enqueued over another path) is not that
    job's outcome to report: the BullMQ job fails saying so, and nothing runs twice."""
    await res.enqueuer.enqueue("db_probe", {"tag": "other"}, job_id="shared-1")
    await node.add(QUEUE, "probe", {"tag": "mine"}, jobId="shared-1")
    rejected = (await node.wait(QUEUE, "shared-1"))["rejected"]
    assert "job id shared-1 belongs to another job (db_probe on intake-routing)" in rejected
    assert await runs(res, "mine") == []


async def test_add_bulk_with_and_without_jobids_delays_and_priorities(
        worker: Process, node: BullmqNode, res: Resources) -> None:
    """`addBulk`: every job runs once under its own id; a delayed one starts no earlier than its
    delay (BullMQ holds it until due, then hands it over at once)."""
    added = await node.call("addBulk", queue=QUEUE, jobs=[
        {"name": "probe", "data": {"tag": "bulk-a"}, "opts": {"jobId": "bulk-a", "priority": 2}},
        {"name": "probe", "data": {"tag": "bulk-b"}, "opts": {"priority": 1}},
        {"name": "probe", "data": {"tag": "bulk-c"}},
        {"name": "probe", "data": {"tag": "bulk-late"}, "opts": {"jobId": "bulk-late", "delay": 700}}])
    sent_s = (await node.call("add", queue=QUEUE, name="probe", data={"tag": "clock"}))["sentMs"] / 1000
    ids = added["ids"]
    for tag, bullmq_id in zip(("bulk-a", "bulk-b", "bulk-c", "bulk-late"), ids, strict=True):
        assert await node.wait(QUEUE, bullmq_id) == {"resolved": {"tag": tag, "runs": 1}}
    assert ids[0] == "bulk-a" and ids[3] == "bulk-late"
    [late] = [r for r in await runs(res, "bulk-late") if r["event"] == "start"]
    assert late["jobId"] == "bulk-late" and float(str(late["t"])) >= sent_s + 0.6


async def test_an_alias_name_runs_the_job_it_names(worker: Process, node: BullmqNode) -> None:
    """The web app's kebab-case names map through the registry's aliases (`db-probe` -> `db_probe`)."""
    bullmq_id = await node.add(QUEUE, "db-probe", {"tag": "alias"})
    assert await node.wait(QUEUE, bullmq_id) == {"resolved": {"tag": "alias", "value": 1}}


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("probe", {"sleepMs": 1}, "invalid payload for probe: tag: Field required"),
    ("route-intake", {"orgId": "org_1"}, "invalid payload for route_intake: intakeRequestId: Field required"),
    ("no-such-job", {}, "unknown job 'no-such-job'"),
    ("process_document", {"documentId": "d", "orgId": "o"}, "runs on document-processing, not intake-routing"),
])
async def test_a_job_that_cannot_run_fails_naming_why_with_one_dead_letter(
        worker: Process, node: BullmqNode, res: Resources, name: str, data: dict[str, object], reason: str) -> None:
    """Validated like every other way in: the BullMQ job fails with the reason (the field named),
    and one dead letter is stored under its Workhorse job id."""
    bullmq_id = await node.add(QUEUE, name, data, jobId=f"bad-{name}")
    rejected = (await node.wait(QUEUE, bullmq_id))["rejected"]
    assert reason in rejected
    [letter] = await res.dlq.list()
    assert letter.job_id == f"bad-{name}" and letter.attempts == 1 and reason in letter.error_message


async def test_progress_is_mirrored_to_bullmq(worker: Process, node: BullmqNode) -> None:
    """What the job reports with `job.progress(percent)` reaches BullMQ's progress (QueueEvents
    listeners and bull-board see it) while the job runs."""
    bullmq_id = await node.add(QUEUE, "report-progress", {"tag": "p", "percents": [30, 70]})
    assert await node.wait(QUEUE, bullmq_id) == {"resolved": {"tag": "p"}}
    assert (await node.call("progress", queue=QUEUE, id=bullmq_id))["seen"] == [30, 70]
    assert (await node.state(QUEUE, bullmq_id))["progress"] == 70


async def test_a_retried_bullmq_job_runs_again_once(worker: Process, node: BullmqNode, res: Resources) -> None:
    """`job.retry()` (bull-board's Retry) of a failed job runs it again as `<id>:run-2`; the first
    run's result does not answer for it."""
    await node.add(QUEUE, "probe", {"tag": "again", "failTimes": 1, "error": "permanent"}, jobId="again")
    assert "rejected" in await node.wait(QUEUE, "again")
    await node.call("retry", queue=QUEUE, id="again")
    assert await node.wait(QUEUE, "again") == {"resolved": {"tag": "again", "runs": 2}}
    assert [r["jobId"] for r in await runs(res, "again") if r["event"] == "start"] == ["again", "again:run-2"]


MALFORMED: dict[str, tuple[str, bytes | str, str]] = {
    # job id: (field overwritten, with, what its BullMQ job fails with)
    "not-json": ("data", "{not json", "(payload): not valid JSON"),
    "huge": ("data", json.dumps({"tag": "x" * 2_000_000}), "(payload): more than 1000000 bytes of JSON"),
    "deep": ("data", "[" * 100_000 + "]" * 100_000, "(payload): nested deeper than 32 levels"),
    "nul-escaped": ("data", '{"tag": "a\\u0000b"}', "tag: contains a NUL character"),
    "nul-raw": ("data", b'{"tag": "a\x00b"}', "(payload): not valid JSON: Invalid control character"),
    "bad-opts": ("opts", "{{{", "(job): BullMQ's record of the job cannot be read"),
}


async def test_malformed_bullmq_records_fail_their_jobs_and_the_ingress_goes_on(
        make_settings: Callable[..., Settings], node: BullmqNode, res: Resources) -> None:
    """Records the bullmq client would never write (data not JSON, over 1 MB, 100,000 levels deep,
    a NUL character; opts not JSON) fail their own BullMQ job with the reason, each with one dead
    letter, without reaching the library's parser; bytes that are not UTF-8 are read as U+FFFD,
    as BullMQ's Node workers read them; and the ingress goes on taking jobs."""
    for job_id in [*MALFORMED, "bad-utf8"]:
        await node.add(QUEUE, "probe", {"tag": job_id}, jobId=job_id)
    for job_id, (field, value, _) in MALFORMED.items():
        await res.redis.hset(f"bull:{QUEUE}:{job_id}", field, value)
    await res.redis.hset(f"bull:{QUEUE}:bad-utf8", "data", b'{"tag": "\xff\xfe"}')
    async with in_process_worker(ingress_settings(make_settings), [QUEUE]):
        assert await node.wait(QUEUE, "bad-utf8") == {"resolved": {"tag": "\ufffd\ufffd", "runs": 1}}
        await until_finished(res, list(MALFORMED))
        for job_id, (_, _, reason) in MALFORMED.items():
            failed = await res.redis.hget(f"bull:{QUEUE}:{job_id}", "failedReason")
            assert isinstance(failed, bytes) and reason in failed.decode(), job_id
        assert await node.wait(QUEUE, await node.add(QUEUE, "probe", {"tag": "after"})) == {
            "resolved": {"tag": "after", "runs": 1}}
    assert sorted(letter.job_id for letter in await res.dlq.list()) == sorted(MALFORMED)


async def until_finished(res: Resources, job_ids: list[str]) -> None:
    async with asyncio.timeout(20):
        while None in await res.redis.zmscore(f"bull:{QUEUE}:failed", job_ids):
            await asyncio.sleep(0.02)


async def test_a_graceful_stop_records_the_outcome_of_a_job_still_running(
        make_settings: Callable[..., Settings], node: BullmqNode, res: Resources) -> None:
    """SIGTERM while a handed-over job runs: the ingress takes nothing more, the process waits for
    the job as it waits for any, and its outcome reaches BullMQ before the process exits."""
    async with in_process_worker(ingress_settings(make_settings), [QUEUE]) as process:
        await node.add(QUEUE, "probe", {"tag": "draining", "sleepMs": 800}, jobId="draining")
        await wait_for_runs(res, "draining", "start", 1)
        process.request_stop()
    state = await node.state(QUEUE, "draining")
    assert state["state"] == "completed" and state["returnvalue"] == {"tag": "draining", "runs": 1}
