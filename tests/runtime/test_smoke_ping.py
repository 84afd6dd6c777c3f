"""A job enqueued through the public interface runs on the real worker."""

from __future__ import annotations

from app.config import Settings
from app.jobs.resources import Resources
from tests.support.worker import in_process_worker


async def test_ping_runs_on_the_named_queue(settings: Settings, res: Resources) -> None:
    """ping enqueued to one queue is answered by that queue's worker with its timestamps."""
    async with in_process_worker(settings):
        enqueued = await res.enqueuer.enqueue("ping", {"note": "hi"}, queue="sla-monitor")
        assert enqueued is not None
        result = await res.enqueuer.job(enqueued.job_id, "sla-monitor").result(timeout_s=10, poll_delay=0.02)
    assert result["pong"] is True
    assert result["queue"] == "sla-monitor"
    assert result["note"] == "hi"
