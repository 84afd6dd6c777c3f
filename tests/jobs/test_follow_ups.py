"""A job's follow-ups are written in the transaction of the change that calls for them (the
outbox): a process killed right after that commit loses no follow-up, and none runs twice."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from app.jobs.resources import Resources
from tests.fakes import documents as files
from tests.fakes.openai import FakeOpenAI
from tests.support.worker import start_worker

EMBEDDINGS = "/v1/embeddings"


async def test_a_kill_right_after_the_commit_loses_no_embedding_and_runs_none_twice(
        make_env: Callable[..., dict[str, str]], res: Resources, fake_openai: FakeOpenAI) -> None:
    """process_document's process is killed -9 the moment the document is COMPLETED, with no relay
    of its own to pass the follow-up on: the embedding waits in the outbox, committed with the
    text; another process relays it and re-runs the cut-off document job, and the text is
    embedded exactly once."""
    await files.add_document(res, "doc-f", files.text_pdf([["The follow-up must not be lost."]]))
    provider = dict(openai_api_key="sk-test", openai_base_url=fake_openai.base_url, embedding_provider="openai",
                    job_lock_ttl_s=3, process_liveness_ttl_s=2)
    first = await start_worker(make_env(outbox_relay="false", **provider), "--queues", "document-processing")
    await res.enqueuer.enqueue("process_document", {"documentId": "doc-f", "orgId": "org-1"}, job_id="ocr-f")
    async with asyncio.timeout(30):
        while await res.db.fetchval("SELECT status FROM documents WHERE id = 'doc-f'") != "COMPLETED":
            await asyncio.sleep(0.002)
    first.signal(signal.SIGKILL)
    await first.wait()
    pending = await res.db.fetchval(
        "SELECT count(*) FROM job_outbox WHERE job_name = 'embed_document' AND status = 'PENDING'")
    assert pending == 1, "the embedding was not committed with the text"
    second = await start_worker(make_env(**provider))
    try:
        async with asyncio.timeout(30):
            while await res.db.fetchval("SELECT count(*) FROM document_embeddings WHERE document_id = 'doc-f'") == 0:
                await asyncio.sleep(0.05)
            await res.enqueuer.job("ocr-f", "document-processing").wait(timeout_s=30)
            while await res.db.fetchval("SELECT count(*) FROM job_outbox WHERE status = 'PENDING'"):
                await asyncio.sleep(0.05)
    finally:
        await second.stop()
    assert fake_openai.count(EMBEDDINGS) == 1
