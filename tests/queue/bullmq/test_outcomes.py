"""The BullMQ ingress's outcome watcher (app/queue/bullmq/outcomes.py) at the moment it is most
likely to be wrong: a look that read Redis before the job's enqueue landed."""

from __future__ import annotations

import asyncio

from app.jobs.resources import Resources
from app.queue.bullmq.outcomes import OutcomeWatcher
from app.queue.handles import JobOutcome

QUEUE = "intake-routing"


class HeldLook(OutcomeWatcher):
    """A watcher whose looks are held after reading Redis, until the test lets them answer."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]  # the same arguments, passed on
        self.read = asyncio.Event()
        self.answer = asyncio.Event()

    async def _look(self, job_ids: list[str]) -> dict[str, tuple[object, bool, object]]:
        found = await super()._look(job_ids)
        self.read.set()
        await self.answer.wait()
        return found


async def test_a_look_that_read_before_the_enqueue_does_not_call_the_job_gone(res: Resources) -> None:
    """Watched from before its enqueue (as the ingress does), the job is not there when the first
    look reads; that look answers only after the enqueue and the wait: the job is waited for, and
    its real outcome (here: aborted while queued) is what the wait returns."""
    watcher = HeldLook(res.redis)
    watcher.start()
    try:
        watcher.expect("early", QUEUE)
        await watcher.read.wait()
        await res.enqueuer.enqueue("probe", {"tag": "early"}, queue=QUEUE, job_id="early")
        waiting = asyncio.create_task(watcher.wait("early", QUEUE))
        await asyncio.sleep(0)  # the wait is registered before the held look answers
        watcher.answer.set()
        await res.enqueuer.job("early", QUEUE).abort()
        async with asyncio.timeout(5):
            outcome = await waiting
        assert isinstance(outcome, JobOutcome) and outcome.result["error"] == "Aborted"
    finally:
        await watcher.stop()
