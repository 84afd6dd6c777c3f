"""What one batch of the relay takes and what becomes of each row in it: rows that can never be
enqueued fail alone with their reason and a dead letter, a batch stops at its byte budget (a
payload over the limit fails unread), and 10,000 rows go out in batches of OUTBOX_BATCH_SIZE."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue import outbox
from app.queue.outbox import OutboxRelay
from app.runtime.startup import open_resources
from tests.support.outbox import QUEUE, insert_probes, rows, running, sample

SettingsFactory = Callable[..., Settings]


async def test_rows_that_can_never_be_enqueued_fail_with_the_reason_and_a_dead_letter_and_block_nothing(
        res: Resources) -> None:
    """An unknown job, a payload missing a field, one with a NUL character (json keeps it; jsonb
    would have refused the web app's whole transaction), one nested 1,000 deep and an unknown
    queue: each row is FAILED with its reason and dead-lettered; the good rows around them are
    dispatched in the same batch."""
    deep = "[" * 1000 + "]" * 1000
    bad = {
        "no_such_job": ("no_such_job", '{"tag": "x"}', QUEUE),
        "tag": ("probe", '{"failTimes": 1}', QUEUE),
        "NUL": ("probe", '{"tag": "nul\\u0000tag"}', QUEUE),
        "nested deeper": ("probe", '{"tag": "deep", "x": ' + deep + "}", QUEUE),
        "unknown queue": ("probe", '{"tag": "q"}', "no-such-queue"),
    }
    [good_1] = await insert_probes(res.db, ["good-1"])
    failing = {}
    for reason, (name, payload, queue) in bad.items():
        failing[reason] = await res.db.fetchval("SELECT workhorse_enqueue($1, $2::text::json, $3)",
                                                name, payload, queue)
    [good_2] = await insert_probes(res.db, ["good-2"])
    result = await OutboxRelay(res).dispatch_batch()
    assert (result.claimed, result.dispatched, result.failed) == (7, 2, 5)
    found = await rows(res)
    assert found[good_1] == ("DISPATCHED", f"outbox:{good_1}") and found[good_2] == ("DISPATCHED", f"outbox:{good_2}")
    for reason, row_id in failing.items():
        status, error = found[row_id]
        assert status == "FAILED" and error is not None and reason in error, (reason, error)
    letters = {d.job_id: d for d in await res.dlq.list()}
    assert set(letters) == {f"outbox:{i}" for i in failing.values()}
    assert letters[f"outbox:{failing['no_such_job']}"].error_class == "UnknownJob"
    nul = letters[f"outbox:{failing['NUL']}"]
    assert nul.error_class == "InvalidPayload" and nul.replay_payload == {"tag": "nul\x00tag"}
    assert letters[f"outbox:{failing['tag']}"].queue == QUEUE
    assert sample(res, "workhorse_outbox_rows_total", outcome="failed") == 5
    assert await OutboxRelay(res).dispatch_batch() == outbox.BatchResult()  # nothing left, nothing retried


async def test_huge_payloads_fail_unread_and_a_batch_stops_at_its_byte_budget(res: Resources) -> None:
    """A payload over the 1 MB limit is FAILED by its size alone (never read into the worker);
    ten 0.9 MB payloads go out in two batches, since one batch reads at most 8 MB."""
    huge = await res.db.fetchval("SELECT workhorse_enqueue('probe', json_build_object('tag', repeat('h', 2000000)),"
                                 " $1)", QUEUE)
    big = await insert_probes(res.db, [f"{n}{'b' * 900_000}" for n in range(10)])
    relay = OutboxRelay(res)
    first = await relay.dispatch_batch()
    second = await relay.dispatch_batch()
    assert (first.failed, first.dispatched, first.more) == (1, 8, True)
    assert (second.dispatched, second.more) == (2, False)
    found = await rows(res)
    assert found[huge][0] == "FAILED" and re.search(r"\(payload\): 2000\d{3} bytes of JSON; at most 1000000",
                                                   str(found[huge][1]))
    assert all(found[i][0] == "DISPATCHED" for i in big)
    [letter] = await res.dlq.list()
    assert letter.job_id == f"outbox:{huge}" and letter.payload is None


async def test_ten_thousand_rows_committed_at_once_go_out_in_batches(make_settings: SettingsFactory) -> None:
    """10,000 rows from one INSERT (one notification) are dispatched in batches of
    OUTBOX_BATCH_SIZE, each row once; the gauges then show nothing waiting."""
    settings = make_settings(outbox_batch_size=500)
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        await res.db.execute(
            "INSERT INTO job_outbox (job_name, payload, queue)"
            " SELECT 'probe', json_build_object('tag', 'bulk-' || g), $1 FROM generate_series(1, 10000) g", QUEUE)
        relay = OutboxRelay(res)
        await relay.refresh_gauges()
        assert sample(res, "workhorse_outbox_rows_waiting") == 10_000
        async with running(relay):
            async with asyncio.timeout(120):
                while await res.db.fetchval("SELECT count(*) FROM job_outbox WHERE status = 'PENDING'"):
                    await asyncio.sleep(0.1)
        await relay.refresh_gauges()
        assert await res.redis.zcard(QUEUE) == 10_000
        assert sample(res, "workhorse_outbox_batch_size_count") == 20
        assert sample(res, "workhorse_outbox_batch_size_sum") == 10_000
        assert sample(res, "workhorse_outbox_rows_total", outcome="dispatched") == 10_000
        assert sample(res, "workhorse_outbox_rows_waiting") == 0
