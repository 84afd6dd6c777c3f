"""The `documents` rows the pipeline reads and updates; records become typed values here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import StringConstraints

from app.errors import NotFound

Status = str  # PENDING | PROCESSING | COMPLETED | FAILED (a CHECK constraint in the schema)

RowId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A document or org id in a payload: not empty, and no NUL (PostgreSQL refuses it in text) or
other control character, so such an id is an invalid payload named as such, never a query."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    org_id: str
    storage_key: str
    filename: str | None
    mime_type: str | None
    document_type: str
    status: Status
    ocr_text: str | None


@dataclass(frozen=True, slots=True)
class OcrOutput:
    """What reading a file gave: saved on the row before the vision step, so that a later attempt
    of the same job on the same file can take it from there instead of running tesseract again."""

    job_id: str
    file_sha256: str
    file_type: str
    text: str
    confidence: float | None
    """0-1, the mean of tesseract's word confidences; None when no page was OCR'd."""
    page_count: int
    ocr_pages: int
    text_layer_pages: int


async def load(db: asyncpg.Pool, document_id: str, org_id: str) -> Document:
    row = await db.fetchrow(
        "SELECT id, org_id, storage_key, filename, mime_type, document_type, status, ocr_text "
        "FROM documents WHERE id = $1 AND org_id = $2", document_id, org_id)
    if row is None:
        raise NotFound(f"document {document_id} of org {org_id} does not exist")
    return Document(**dict(row))


async def start(db: asyncpg.Pool, document_id: str, progress: int) -> None:
    await db.execute(
        "UPDATE documents SET status = 'PROCESSING', progress = $2, processing_error = NULL, "
        "updated_at = now() WHERE id = $1", document_id, progress)


async def set_progress(db: asyncpg.Pool, document_id: str, progress: int) -> None:
    await db.execute("UPDATE documents SET progress = $2, updated_at = now() WHERE id = $1", document_id, progress)


async def save_ocr(db: asyncpg.Pool, document_id: str, out: OcrOutput) -> None:
    await db.execute(
        "UPDATE documents SET ocr_text = $2, ocr_confidence = $3, page_count = $4, ocr_job_id = $5, "
        "ocr_file_sha256 = $6, ocr_file_type = $7, ocr_pages = $8, ocr_text_layer_pages = $9, "
        "updated_at = now() WHERE id = $1",
        document_id, out.text, out.confidence, out.page_count, out.job_id, out.file_sha256, out.file_type,
        out.ocr_pages, out.text_layer_pages)


async def saved_ocr(db: asyncpg.Pool, document_id: str, *, job_id: str, file_sha256: str) -> OcrOutput | None:
    """The OCR output an earlier attempt of job `job_id` saved for this very file, if any."""
    row = await db.fetchrow(
        "SELECT ocr_text, ocr_confidence, page_count, ocr_file_type, ocr_pages, ocr_text_layer_pages "
        "FROM documents WHERE id = $1 AND ocr_job_id = $2 AND ocr_file_sha256 = $3 AND ocr_text IS NOT NULL",
        document_id, job_id, file_sha256)
    if row is None:
        return None
    return OcrOutput(job_id, file_sha256, row["ocr_file_type"], row["ocr_text"], row["ocr_confidence"],
                     row["page_count"], row["ocr_pages"], row["ocr_text_layer_pages"])


async def complete(db: asyncpg.Pool | PoolConnectionProxy, document_id: str, *, document_type: str,
                   structured: dict[str, Any] | None) -> None:
    """COMPLETED; the text, confidence and page count are already there (save_ocr)."""
    await db.execute(
        "UPDATE documents SET status = 'COMPLETED', progress = 100, document_type = $2, structured_data = $3, "
        "processing_error = NULL, updated_at = now(), processed_at = now() WHERE id = $1",
        document_id, document_type, structured)


async def fail(db: asyncpg.Pool, document_id: str, error: str) -> None:
    await db.execute(
        "UPDATE documents SET status = 'FAILED', processing_error = $2, updated_at = now() WHERE id = $1",
        document_id, error[:2000])
