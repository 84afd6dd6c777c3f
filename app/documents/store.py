"""The `documents` rows the pipeline reads and updates; records become typed values here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from app.errors import NotFound

Status = str  # PENDING | PROCESSING | COMPLETED | FAILED (a CHECK constraint in the schema)


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


async def complete(db: asyncpg.Pool, document_id: str, *, text: str, confidence: float | None, page_count: int,
                   document_type: str, structured: dict[str, Any] | None) -> None:
    await db.execute(
        "UPDATE documents SET status = 'COMPLETED', progress = 100, ocr_text = $2, ocr_confidence = $3, "
        "page_count = $4, document_type = $5, structured_data = $6, processing_error = NULL, "
        "updated_at = now(), processed_at = now() WHERE id = $1",
        document_id, text, confidence, page_count, document_type, structured)


async def fail(db: asyncpg.Pool, document_id: str, error: str) -> None:
    await db.execute(
        "UPDATE documents SET status = 'FAILED', processing_error = $2, updated_at = now() WHERE id = $1",
        document_id, error[:2000])
