"""`workhorse jobs` as an operator uses it: `jobs show` names the queue a job ran on and prints
undecodable bytes as such instead of crashing; `jobs stuck` lists jobs past their timeout."""

from __future__ import annotations

import json
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import keys, stats
from app.queue.clock import now_ms
from tests.support.worker import cli, in_process_worker, run_command

EnvFactory = Callable[..., dict[str, str]]
QUEUE = "intake-routing"


async def test_jobs_show_marks_undecodable_result_and_progress_instead_of_crashing(
        make_env: EnvFactory, res: Resources) -> None:
    """A result or progress key holding bytes that are not JSON prints as JSON with the bytes
    marked undecodable."""
    await res.redis.set(keys.RESULT_PREFIX + "garbled", b"\x80\x04\x95pickle\xff\x00")
    await res.redis.set(keys.progress_key("garbled"), b"\xff\xfe{not json")
    code, out, err = await run_command(make_env(), "app.cli", "jobs", "show", "garbled")
    assert code == 0 and "Traceback" not in err
    shown = json.loads(out)
    assert shown["jobId"] == "garbled" and shown["status"] == "complete" and shown["success"] is False
    assert "undecodable" in shown["result"] and "undecodable" in shown["progress"]


async def test_jobs_show_names_the_queue_a_job_ran_on(make_env: EnvFactory, settings: Settings,
                                                      res: Resources) -> None:
    """A ping run on calendar-sync shows queue calendar-sync without --queue, queued or done."""
    queued = await res.enqueuer.enqueue("ping", {}, queue="calendar-sync")
    assert queued is not None
    env = make_env()
    code, out, _ = await run_command(env, "app.cli", "jobs", "show", queued.job_id)
    assert code == 0 and json.loads(out)["queue"] == "calendar-sync" and json.loads(out)["status"] == "queued"
    async with in_process_worker(settings, ["calendar-sync"]):
        await res.enqueuer.job(queued.job_id, "calendar-sync").wait(timeout_s=20, poll_delay=0.02)
    code, out, _ = await run_command(env, "app.cli", "jobs", "show", queued.job_id)
    shown = json.loads(out)
    assert code == 0 and shown["queue"] == "calendar-sync" and shown["success"] is True


async def test_jobs_stuck_lists_jobs_past_their_timeout(make_env: Callable[..., dict[str, str]],
                                                        res: Resources) -> None:
    """A job a live process reports running for longer than its queue's timeout is listed."""
    await stats.sync_running(res.redis, QUEUE, {"old-job": 1_000}, [], ttl_s=60)
    await stats.sync_running(res.redis, QUEUE, {"new-job": now_ms()}, [], ttl_s=60)
    code, out = await cli(make_env(), "jobs", "stuck", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["jobId"] for r in rows] == ["old-job"]
    assert rows[0]["queue"] == QUEUE and rows[0]["timeoutS"] == 120
    assert await res.redis.exists(keys.running_key(QUEUE))
