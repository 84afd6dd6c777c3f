"""OCR and vision extraction of an uploaded document, then its embedding job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.documents import schemas, store
from app.documents.ocr import Extraction
from app.documents.schemas import DocumentType
from app.documents.text import sanitize
from app.errors import PermanentError
from app.jobs.embeddings import EmbedDocument
from app.queue.payload import Payload
from app.queue.registry import JobSpec
from app.queue.retries import classify
from app.runtime.resources import Job


class ProcessDocument(Payload):
    document_id: str
    org_id: str
    document_type: Literal["invoice", "receipt", "form", "generic"] | None = None
    perform_ocr: bool = Field(True, alias="performOCR")
    perform_vision_extraction: bool = False
    language: str = Field("eng", pattern=r"^[a-z_]{3,8}(\+[a-z_]{3,8})*$")


async def process_document(job: Job, p: ProcessDocument) -> dict[str, Any]:
    """Load, read (text layer or OCR), optionally extract fields, store, queue the embedding."""
    res = job.res
    doc = await store.load(res.db, p.document_id, p.org_id)
    doc_type = _document_type(p.document_type or doc.document_type)
    await store.start(res.db, doc.id, 10)
    await job.progress(10, step="loading")
    async with res.breakers.guard("storage"):
        data = await res.providers.storage.get(doc.storage_key, max_bytes=res.settings.document_max_bytes)
    await _step(job, doc.id, 30, "reading")
    extraction = await res.providers.ocr.extract(data, language=p.language, perform_ocr=p.perform_ocr)
    await _step(job, doc.id, 60, "extracting")
    structured, vision_error = None, None
    if p.perform_vision_extraction:
        structured, vision_error = await _vision(job, data, doc_type)
    await _step(job, doc.id, 90, "saving")
    text = sanitize(extraction.text)
    await store.complete(res.db, doc.id, text=text, confidence=extraction.confidence,
                         page_count=extraction.page_count, document_type=doc_type, structured=structured)
    embed_job_id = await _queue_embedding(job, p, text)
    await job.progress(100, step="done")
    return _result(doc.id, extraction, text, structured, vision_error, embed_job_id)


def _document_type(value: str) -> DocumentType:
    for known in schemas.MODELS:
        if known == value:
            return known
    return "generic"


async def _step(job: Job, document_id: str, percent: int, step: str) -> None:
    await store.set_progress(job.res.db, document_id, percent)
    await job.progress(percent, step=step)


async def record_failure(job: Job, p: ProcessDocument, exc: BaseException) -> None:
    """Dead-lettered (a bad file, a missing row, the last attempt failed or timed out): FAILED."""
    reason = str(exc) if classify(exc) != "bug" else f"internal error ({type(exc).__name__})"
    await store.fail(job.res.db, p.document_id, reason or type(exc).__name__)


async def _vision(job: Job, data: bytes, doc_type: DocumentType) -> tuple[dict[str, Any] | None, str | None]:
    """Fields from the vision model, or why there are none. Transient failures propagate (retry);
    a refused request or a reply that breaks the schema keeps the text and reports the reason."""
    client = job.res.providers.openai
    if client is None:
        return None, "vision extraction needs OPENAI_API_KEY"
    pages = range(job.res.settings.vision_max_pages)
    images = await job.res.providers.ocr.page_images(data, pages)
    try:
        reply = await client.extract_json(images=images, instructions=schemas.instructions(doc_type),
                                          schema_name=doc_type, schema=schemas.json_schema(doc_type))
        return schemas.validate(doc_type, reply), None
    except PermanentError as exc:
        job.log.warning("vision_extraction_failed", error=str(exc))
        return None, str(exc)


async def _queue_embedding(job: Job, p: ProcessDocument, text: str) -> str | None:
    if not text:
        return None
    # The text was just (re)written, so older vectors are stale: replace them. The id is tied to
    # this run, so a retried run does not queue a second embedding.
    queued = await job.res.enqueuer.send(EmbedDocument(document_id=p.document_id, org_id=p.org_id, force=True),
                                         job_id=f"embed-{p.document_id}-{job.job_id}")
    return queued.job_id if queued else f"embed-{p.document_id}-{job.job_id}"


def _result(document_id: str, extraction: Extraction, text: str, structured: dict[str, Any] | None,
            vision_error: str | None, embed_job_id: str | None) -> dict[str, Any]:
    return {
        "documentId": document_id, "status": "COMPLETED", "fileType": extraction.kind,
        "pageCount": extraction.page_count, "ocrPages": extraction.ocr_pages,
        "textLayerPages": sum(1 for pg in extraction.pages if pg.source == "text_layer"),
        "confidence": extraction.confidence, "textLength": len(text),
        "structuredData": structured, "visionError": vision_error, "embeddingJobId": embed_job_id,
    }


SPEC = JobSpec(name="process_document", queue="document-processing", payload=ProcessDocument,
               run=process_document, on_dead_letter=record_failure,
               description="OCR / text layer, optional vision extraction, then embed")
