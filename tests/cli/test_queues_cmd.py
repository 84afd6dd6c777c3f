"""`workhorse queues` as an operator uses it: counts as a table or JSON with a total, pause and
resume (one queue or --all) holding across processes, drain waiting for work to finish; unknown,
enormous or missing names and out-of-range ids are one short line, exit 2."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control, stats
from tests.support.worker import cli, in_process_worker, one_error_line, run_command, wait_for_runs

EnvFactory = Callable[..., dict[str, str]]
QUEUE = "intake-routing"


async def test_queues_shows_counts_and_pause_holds_across_processes(
        make_env: Callable[..., dict[str, str]], settings: Settings, res: Resources) -> None:
    """`queues pause` stops every process taking jobs (they wait); `resume` lets them run; the
    table and JSON show waiting, delayed, completed and paused."""
    env = make_env()
    code, out = await cli(env, "queues", "pause", QUEUE)
    assert code == 0 and "paused" in out
    async with in_process_worker(settings, [QUEUE]):
        for n in range(3):
            await res.enqueuer.enqueue("probe", {"tag": f"held{n}"}, queue=QUEUE)
        await res.enqueuer.enqueue("probe", {"tag": "later"}, queue=QUEUE, defer_s=600)
        code, out = await cli(env, "queues", "--json")
        row = json.loads(out)[QUEUE]
        assert code == 0 and row["paused"] is True and row["waiting"] == 3 and row["delayed"] == 1
        assert await res.redis.llen("test:runs") == 0
        code, out = await cli(env, "queues", "resume", QUEUE)
        assert code == 0
        for n in range(3):
            await wait_for_runs(res, f"held{n}", "done", 1)
        await res.stats.flush(res.redis)
        async with asyncio.timeout(10):
            while (await stats.read(res.redis, [QUEUE]))[QUEUE].completed < 3:
                await asyncio.sleep(0.1)
    code, out = await cli(env, "queues")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["QUEUE", "WAITING", "ACTIVE", "DELAYED"]
    line = next(row for row in out.splitlines() if row.startswith(QUEUE))
    assert line.split()[1:5] == ["0", "0", "1", "3"]


async def test_drain_waits_for_work_to_finish_and_fails_on_timeout(
        make_env: Callable[..., dict[str, str]], settings: Settings, res: Resources) -> None:
    """`queues drain` returns 0 once the queue is empty while workers keep working, and exits 1
    when it cannot drain in time."""
    env = make_env()
    await control.pause(res.redis, QUEUE)
    await res.enqueuer.enqueue("probe", {"tag": "stay"}, queue=QUEUE)
    code, out = await cli(env, "queues", "drain", QUEUE, "--timeout", "0.5")
    assert code == 1 and "did not drain" in out and "waiting=1" in out
    await control.resume(res.redis, QUEUE)
    async with in_process_worker(settings, [QUEUE]):
        for n in range(5):
            await res.enqueuer.enqueue("probe", {"tag": f"d{n}", "sleepMs": 200}, queue=QUEUE)
        code, out = await cli(env, "queues", "drain", QUEUE, "--timeout", "30")
        assert code == 0 and "drained" in out
        for n in range(5):
            assert await wait_for_runs(res, f"d{n}", "done", 1, timeout_s=1)


async def test_pause_and_resume_all_and_drain_several(make_env: EnvFactory, res: Resources) -> None:
    """`queues pause --all` pauses every queue, `resume --all` undoes it; `drain A B` waits for
    both; naming no queue (or a queue and --all) is one line, exit 2."""
    env = make_env()
    code, _, err = await run_command(env, "app.cli", "queues", "pause", "--all")
    assert code == 0, err
    paused = await control.paused(res.redis)
    assert {"sla-monitor", "calendar-sync", "intake-routing", "document-processing"} <= paused
    code, _, err = await run_command(env, "app.cli", "queues", "resume", "--all")
    assert code == 0 and await control.paused(res.redis) == set()
    for argv in (("queues", "pause"), ("queues", "drain", "sla-monitor", "--all"), ("queues", "resume", "nope")):
        code, _, err = await run_command(env, "app.cli", *argv)
        assert code == 2 and one_error_line(err), argv
    await res.enqueuer.enqueue("ping", {}, queue="calendar-sync")
    code, _, err = await run_command(env, "app.cli", "queues", "drain", "sla-monitor", "calendar-sync",
                                     "--timeout", "0.5")
    assert code == 1 and "did not drain" in err and "waiting=1" in err


async def test_queues_json_has_a_total(make_env: EnvFactory, res: Resources) -> None:
    """`queues --json` adds "total": every count summed over the queues; the table a total row."""
    for q in ("sla-monitor", "sla-monitor", "calendar-sync"):
        await res.enqueuer.enqueue("ping", {}, queue=q)
    await res.enqueuer.enqueue("ping", {}, queue="intake-routing", defer_s=600)
    env = make_env()
    code, out, _ = await run_command(env, "app.cli", "queues", "--json")
    shown = json.loads(out)
    total = shown.pop("total")
    assert code == 0 and total["waiting"] == 3 and total["delayed"] == 1
    assert total["concurrency"] == sum(r["concurrency"] for r in shown.values())
    code, out, _ = await run_command(env, "app.cli", "queues")
    assert out.splitlines()[-1].split()[:4] == ["total", "3", "0", "1"]


@pytest.mark.parametrize("argv", [
    ("dlq", "retry", "99999999999999999999"), ("dlq", "show", "-5"), ("dlq", "show", "1e3"),
    ("queues", "pause", "q" * 100_000), ("queues", "drain", "sla-monitor", "nope\u202e"),
    ("queues", "resume"),
])
async def test_out_of_range_ids_and_unknown_or_huge_queue_names_are_one_short_line(
        make_env: EnvFactory, argv: tuple[str, ...]) -> None:
    """A dead letter id beyond bigint or below 1, and queue names that are unknown, enormous or
    missing: a short error line (argparse's own after its usage line), exit 2, no traceback."""
    code, _, err = await run_command(make_env(), "app.cli", *argv)
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert code == 2 and len(err) < 1000 and ("error" in line or "unknown queue" in line or "--all" in line), err
