"""Chunk a document's text, embed the chunks in batches and store the vectors."""

from __future__ import annotations

from app.jobs._pending import not_built_yet
from app.payload import Payload
from app.registry import JobSpec


class EmbedDocument(Payload):
    document_id: str
    org_id: str
    force: bool = False


SPEC = JobSpec(name="embed_document", queue="document-embedding", payload=EmbedDocument,
               run=not_built_yet, description="chunk, embed (batches of 100) and store vectors")
