"""`workhorse dlq` as an operator uses it: list as a table or JSON, show one letter, purge by
queue and age, and retry every letter on its own, reporting the ones refused."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from app.jobs.resources import Resources
from tests.support.worker import cli, run_command

EnvFactory = Callable[..., dict[str, str]]


async def test_dlq_cli_lists_shows_and_purges_only_what_it_was_asked(
        make_env: Callable[..., dict[str, str]], res: Resources) -> None:
    """`workhorse dlq` lists as a table or JSON, shows one letter, and purges by queue and age."""
    for queue, job_id in (("sla-monitor", "a"), ("sla-monitor", "b"), ("calendar-sync", "c")):
        await res.dlq.put(job_id=job_id, job_name="ping", queue=queue, payload={}, attempts=1,
                          error_class="bug", error_message=f"boom {job_id}")
    await res.db.execute("UPDATE dead_letters SET last_failed_at = now() - interval '40 days' WHERE job_id = 'a'")
    env = make_env()
    code, out = await cli(env, "dlq", "list", "--json")
    assert code == 0 and {d["jobId"] for d in json.loads(out)} == {"a", "b", "c"}
    code, out = await cli(env, "dlq", "list", "--queue", "calendar-sync")
    assert code == 0 and "boom c" in out and "boom a" not in out and out.startswith("ID")
    code, out = await cli(env, "dlq", "purge")
    assert code == 2 and "--all" in out
    code, out = await cli(env, "dlq", "purge", "--queue", "sla-monitor", "--older-than", "30d")
    assert code == 0 and "purged 1" in out
    assert {d.job_id for d in await res.dlq.list()} == {"b", "c"}
    letter_id = (await res.dlq.list(queue="calendar-sync"))[0].id
    code, out = await cli(env, "dlq", "show", str(letter_id), "--json")
    assert code == 0 and json.loads(out)["error"] == "boom c"
    assert await res.dlq.purge(queue="calendar-sync") == 1
    assert await res.dlq.purge(older_than=dt.timedelta(days=1)) == 0
    assert {d.job_id for d in await res.dlq.list()} == {"b"}


async def test_dlq_retry_all_retries_each_letter_on_its_own(make_env: EnvFactory, res: Resources) -> None:
    """Nine dead letters, the oldest no longer valid today: eight are enqueued again, the
    refused one is reported with its reason and stays DEAD, and the exit code is 1."""
    await res.dlq.put(job_id="bad", job_name="ping", queue="sla-monitor", payload={"sleepMs": -5},
                      attempts=1, error_class="bug", error_message="boom")
    for n in range(8):
        await res.dlq.put(job_id=f"good{n}", job_name="ping", queue="sla-monitor", payload={"note": f"n{n}"},
                          attempts=3, error_class="TransientError", error_message="down")
    code, out, err = await run_command(make_env(), "app.cli", "dlq", "retry", "--all")
    assert code == 1 and "Traceback" not in err
    assert "retried 8 of 9; refused 1" in out
    bad_line = next(line for line in out.splitlines() if "refused (stays DEAD)" in line)
    assert "sleepMs" in bad_line
    [left] = await res.dlq.list()
    assert left.job_id == "bad" and left.status == "DEAD"
    assert len(await res.dlq.list(status="RETRIED", limit=20)) == 8
    assert await res.redis.zcard("sla-monitor") == 8
