"""The payload of `embed_document` (app/jobs/embeddings.py), here so that the document
processing job can enqueue it, typed, without importing another job family."""

from __future__ import annotations

from app.documents.store import RowId
from app.queue.payload import Payload


class EmbedDocument(Payload):
    document_id: RowId
    org_id: RowId
    force: bool = False
    """Replace existing embeddings (otherwise a document that has them is skipped)."""
