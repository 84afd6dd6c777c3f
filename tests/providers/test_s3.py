"""The S3-compatible storage backend (app/providers/s3.py) against a local S3 server: files put
and read back, a missing one NotFound, and an outage retried until the document completes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.config import Settings
from app.errors import NotFound
from app.jobs.resources import Resources
from app.providers.s3 import S3Storage
from tests.fakes import documents as files
from tests.support.documents import QUEUE, row
from tests.support.jobs import outcome
from tests.support.services import free_port
from tests.support.worker import in_process_worker

pytestmark = pytest.mark.usefixtures("tesseract")


async def test_s3_storage_outage_is_retried_then_the_document_completes(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """With the S3-compatible store down the read fails transiently (no dead letter, no FAILED);
    the retry after it is back reads the file and the document completes."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    settings = make_settings(storage_backend="s3", s3_bucket="uploads", s3_endpoint_url=f"http://127.0.0.1:{port}",
                             s3_access_key_id="test", s3_secret_access_key="test",
                             document_processing_base_delay_s=0.5, document_processing_attempts=4)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = S3Storage.from_settings(settings.s3)
    try:
        await store.create_bucket()
        await store.put("org-1/s3-1", files.png(["Stored in a bucket"]))
        assert await store.get("org-1/s3-1", max_bytes=10**6) == files.png(["Stored in a bucket"])
        with pytest.raises(NotFound):
            await store.get("org-1/missing", max_bytes=10**6)
        await files.add_document(res, "s3-1", None)
        server.stop()
        async with in_process_worker(settings, [QUEUE]) as worker:
            queued = await res.enqueuer.enqueue("process_document", {"documentId": "s3-1", "orgId": "org-1"})
            assert queued is not None
            async with asyncio.timeout(10):
                while worker.res.breakers["storage"].failures < 1:
                    await asyncio.sleep(0.02)
            assert (await row(res, "s3-1"))["status"] == "PROCESSING"
            server.start()
            ok, result = await outcome(res, queued.job_id, QUEUE)
    finally:
        await store.aclose()
        server.stop()
    assert ok, result
    assert (await row(res, "s3-1"))["ocr_text"] == "Stored in a bucket"
    assert await res.dlq.list() == []
