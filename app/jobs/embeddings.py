"""Chunk a document's text, embed the chunks in batches and store the vectors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from app.documents import store, vectors
from app.documents.chunking import Chunk, chunk_text
from app.documents.payloads import EmbedDocument
from app.errors import JobSkipped, PermanentError
from app.jobs.resources import Job
from app.providers.embedding import EmbeddingProvider, no_provider_reason
from app.queue.registry import JobSpec


async def embed_document(job: Job, p: EmbedDocument) -> dict[str, Any]:
    """Skip if done, chunk, embed batch by batch, replace the stored vectors in one transaction."""
    started = time.perf_counter()
    res = job.res
    doc = await store.load(res.db, p.document_id, p.org_id)
    if not p.force and await vectors.exists(res.db, doc.id):
        raise JobSkipped(f"document {doc.id} already has embeddings; enqueue with force to replace them")
    if not doc.ocr_text or not doc.ocr_text.strip():
        raise PermanentError(f"document {doc.id} has no text to embed (status {doc.status}); process it first")
    provider = res.providers.embedding
    if provider is None:
        raise JobSkipped(no_provider_reason(res.settings.embedding))
    settings = res.settings
    # Tokenizing a long text takes a while; the loop keeps serving meanwhile.
    chunks = await asyncio.to_thread(chunk_text, doc.ocr_text, size=settings.chunk.tokens,
                                     overlap=settings.chunk.overlap_tokens)
    await job.progress(10, chunks=len(chunks))
    embedded, tokens = await _embed(job, provider, chunks, settings.embedding.batch_size)
    stored = await vectors.replace(res.db, document_id=doc.id, org_id=doc.org_id, model=provider.model,
                                   chunks=chunks, vectors=embedded, force=p.force)
    if not stored:
        raise JobSkipped(f"document {doc.id} was embedded by another run meanwhile")
    await job.progress(100)
    average_tokens = round(sum(c.token_count for c in chunks) / len(chunks), 1)
    return {
        "success": True, "avgChunkSize": average_tokens,  # the runbook's names, for the web app
        "documentId": doc.id, "provider": provider.name, "model": provider.model,
        "dimensions": len(embedded[0]), "chunksCreated": len(chunks), "embeddingsGenerated": len(embedded),
        "tokens": tokens or sum(c.token_count for c in chunks),
        "averageChunkTokens": average_tokens,
        "averageChunkChars": round(sum(len(c.content) for c in chunks) / len(chunks), 1),
        "processingTimeMs": round((time.perf_counter() - started) * 1000),
    }


async def _embed(job: Job, provider: EmbeddingProvider, chunks: Sequence[Chunk],
                 batch_size: int) -> tuple[list[list[float]], int]:
    """Every chunk's vector, one request per `batch_size` chunks, in order."""
    out: list[list[float]] = []
    tokens = 0
    for first in range(0, len(chunks), batch_size):
        batch = await provider.embed([c.content for c in chunks[first:first + batch_size]])
        out.extend(batch.vectors)
        tokens += batch.tokens
        await job.progress(10 + 80 * len(out) // len(chunks), embedded=len(out), chunks=len(chunks))
    dimensions = {len(v) for v in out}
    if len(dimensions) != 1 or not 0 < min(dimensions) <= vectors.MAX_DIMENSIONS:
        raise PermanentError(f"{provider.model} returned vectors of unusable dimensions {sorted(dimensions)}")
    return out, tokens


SPEC = JobSpec(name="embed_document", queue="document-embedding", aliases=("document-embedding",),
               payload=EmbedDocument,
               run=embed_document, description="chunk, embed (batches of 100) and store vectors")
