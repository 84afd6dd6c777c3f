"""OCR and vision extraction of an uploaded document, then its embedding job.

The text is saved on the row as soon as it is read, before the vision step: a vision failure
that is retried (429, 5xx) then resumes from the saved text instead of running tesseract again,
when the retry is the same job and the file in storage is byte for byte the one that was read.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from app.documents import schemas, store
from app.documents.payloads import EmbedDocument
from app.documents.schemas import DocumentType
from app.documents.store import OcrOutput, RowId
from app.documents.text import sanitize
from app.errors import PermanentError
from app.jobs.resources import Job
from app.queue import outbox
from app.queue.enqueue import JobRequest
from app.queue.payload import Payload
from app.queue.registry import JobSpec
from app.queue.retries import classify


class ProcessDocument(Payload):
    document_id: RowId
    org_id: RowId
    document_type: Literal["invoice", "receipt", "form", "generic"] | None = None
    """None: the row's type; if that is generic too and vision runs, the model detects it."""
    perform_ocr: bool = Field(True, alias="performOCR")
    perform_vision_extraction: bool = False
    language: str = Field("eng", pattern=r"^[a-z_]{3,8}(\+[a-z_]{3,8})*$")


@dataclass(frozen=True, slots=True)
class Vision:
    """What the vision step gave: fields, or why there are none; the type, if it detected one."""

    fields: dict[str, Any] | None = None
    error: str | None = None
    detected_type: DocumentType | None = None


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
    read = await _read(job, p, doc.id, data)
    await _step(job, doc.id, 60, "extracting")
    vision = Vision()
    if p.perform_vision_extraction:
        # Only a type nobody gave is detected: the payload's, or a specific one on the row, wins.
        vision = await _vision(job, data, doc_type, detect=p.document_type is None and doc_type == "generic")
    doc_type = vision.detected_type or doc_type
    await _step(job, doc.id, 90, "saving")
    embed_job_id = await _complete(job, p, doc_type, vision, read.text)
    await job.progress(100, step="done")
    return _result(doc.id, read, doc_type, vision, embed_job_id)


def _document_type(value: str) -> DocumentType:
    for known in schemas.MODELS:
        if known == value:
            return known
    return "generic"


async def _step(job: Job, document_id: str, percent: int, step: str) -> None:
    await store.set_progress(job.res.db, document_id, percent)
    await job.progress(percent, step=step)


async def _read(job: Job, p: ProcessDocument, document_id: str, data: bytes) -> OcrOutput:
    """The file's text: what an earlier attempt of this job saved for these very bytes, else read
    now (text layers, tesseract) and saved on the row before anything else can fail."""
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    if job.attempt > 1:
        saved = await store.saved_ocr(job.res.db, document_id, job_id=job.job_id, file_sha256=digest)
        if saved is not None:
            job.log.info("ocr_output_reused", attempt=job.attempt, pages=saved.page_count)
            return saved
    extraction = await job.res.providers.ocr.extract(data, language=p.language, perform_ocr=p.perform_ocr)
    read = OcrOutput(job_id=job.job_id, file_sha256=digest, file_type=extraction.kind,
                     text=sanitize(extraction.text), confidence=extraction.confidence,
                     page_count=extraction.page_count, ocr_pages=extraction.ocr_pages,
                     text_layer_pages=extraction.text_layer_pages)
    await store.save_ocr(job.res.db, document_id, read)
    return read


async def record_failure(job: Job, p: ProcessDocument, exc: BaseException) -> None:
    """Dead-lettered (a bad file, a missing row, the last attempt failed or timed out): FAILED."""
    reason = str(exc) if classify(exc) != "bug" else f"internal error ({type(exc).__name__})"
    await store.fail(job.res.db, p.document_id, reason or type(exc).__name__)


async def _vision(job: Job, data: bytes, doc_type: DocumentType, *, detect: bool) -> Vision:
    """Fields from the vision model (and the type, when `detect`), or why there are none.
    Transient failures propagate (retry); a refused request or a reply that breaks the schema
    keeps the text and reports the reason."""
    client = job.res.providers.openai
    if client is None:
        return Vision(error="vision extraction needs OPENAI_API_KEY")
    images = await job.res.providers.ocr.page_images(data, range(job.res.settings.vision_max_pages))
    try:
        if detect:
            reply = await client.extract_json(images=images, instructions=schemas.detect_instructions(),
                                              schema_name=schemas.DETECT_SCHEMA_NAME, schema=schemas.detect_schema())
            detected, fields = schemas.validate_detected(reply)
            return Vision(fields, detected_type=detected)
        reply = await client.extract_json(images=images, instructions=schemas.instructions(doc_type),
                                          schema_name=doc_type, schema=schemas.json_schema(doc_type))
        return Vision(schemas.validate(doc_type, reply))
    except PermanentError as exc:
        job.log.warning("vision_extraction_failed", error=str(exc))
        return Vision(error=str(exc))


async def _complete(job: Job, p: ProcessDocument, doc_type: DocumentType, vision: Vision, text: str) -> str | None:
    """COMPLETED, and the embedding queued, in one transaction: the outbox relay enqueues it once
    this commits, so a crash after the commit cannot lose it. Returns the embedding's job id."""
    # The text was just (re)written, so older vectors are stale: replace them. The id is tied to
    # this job, so a run again after a crash queues no second embedding.
    embed_id = f"embed-{p.document_id}-{job.job_id}" if text else None
    follow_ups = [JobRequest.of(EmbedDocument(document_id=p.document_id, org_id=p.org_id, force=True),
                                job_id=embed_id)] if embed_id else []
    async with job.res.db.acquire() as conn, conn.transaction():
        await store.complete(conn, p.document_id, document_type=doc_type, structured=vision.fields)
        await outbox.put(conn, job.res.registry, follow_ups)
    return embed_id


def _result(document_id: str, read: OcrOutput, doc_type: DocumentType, vision: Vision,
            embed_job_id: str | None) -> dict[str, Any]:
    return {
        # The runbook's keys (what the web app reads), then ours.
        "success": True, "documentId": document_id, "ocrTextLength": len(read.text),
        "confidence": read.confidence, "hasStructuredData": vision.fields is not None,
        "embeddingQueued": embed_job_id is not None,
        "status": "COMPLETED", "fileType": read.file_type, "pageCount": read.page_count,
        "ocrPages": read.ocr_pages, "textLayerPages": read.text_layer_pages, "textLength": len(read.text),
        "documentType": doc_type, "documentTypeDetected": vision.detected_type is not None,
        "structuredData": vision.fields, "visionError": vision.error, "embeddingJobId": embed_job_id,
    }


SPEC = JobSpec(name="process_document", queue="document-processing", aliases=("document-processing",),
               payload=ProcessDocument,
               run=process_document, on_dead_letter=record_failure,
               description="OCR / text layer, optional vision extraction, then embed")
