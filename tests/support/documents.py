"""The document-processing job as the tests run it: enqueue one document and wait for its outcome,
read its row back, and look into the worker's OCR engine."""

from __future__ import annotations

from typing import Any

from app.documents.ocr import OcrEngine
from app.jobs.resources import Resources
from app.runtime.process import Process
from tests.support.jobs import outcome

QUEUE = "document-processing"


async def process(res: Resources, doc_id: str, **options: Any) -> tuple[bool, Any]:
    """(succeeded, result) of process_document for the document, once it has finished for good."""
    queued = await res.enqueuer.enqueue("process_document", {"documentId": doc_id, "orgId": "org-1", **options})
    assert queued is not None
    return await outcome(res, queued.job_id, QUEUE)


async def row(res: Resources, doc_id: str) -> dict[str, Any]:
    """The document's row."""
    found = await res.db.fetchrow("SELECT * FROM documents WHERE id = $1", doc_id)
    assert found is not None
    return dict(found)


def engine(process: Process) -> OcrEngine:
    """The worker's OCR engine (its counters say how many pages reached tesseract)."""
    found: OcrEngine = process.res.providers.ocr
    return found
