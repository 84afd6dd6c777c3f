"""Chunks and their vectors in `document_embeddings` (pgvector): replace atomically, search by cosine.

The document row records when, how many and with which model its chunks were embedded, in the
transaction that stores them, so the row never claims vectors that are not there (or the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from app.documents.chunking import Chunk

_COLUMNS = ("document_id", "org_id", "chunk_index", "content", "start_char", "end_char", "token_count",
            "model", "dimensions", "embedding")
# pgvector's largest dimension; the per-dimension HNSW indexes cast to vector(N).
MAX_DIMENSIONS = 16_000


@dataclass(frozen=True, slots=True)
class Match:
    document_id: str
    chunk_index: int
    content: str
    start_char: int
    end_char: int
    distance: float
    """Cosine distance: 0 is the same direction, 2 the opposite."""


async def exists(db: asyncpg.Pool, document_id: str) -> bool:
    found = await db.fetchval("SELECT EXISTS (SELECT 1 FROM document_embeddings WHERE document_id = $1)",
                              document_id)
    return bool(found)


async def replace(db: asyncpg.Pool, *, document_id: str, org_id: str, model: str, chunks: Sequence[Chunk],
                  vectors: Sequence[list[float]], force: bool) -> bool:
    """Store the chunks in one transaction (old ones removed) and note them on the document row;
    False if, unforced, some appeared meanwhile."""
    dimensions = len(vectors[0])
    records = [
        (document_id, org_id, c.index, c.content, c.start_char, c.end_char, c.token_count, model, dimensions, v)
        for c, v in zip(chunks, vectors, strict=True)
    ]
    async with db.acquire() as conn, conn.transaction():
        # Two runs for one document queue here instead of colliding on (document_id, chunk_index).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('document_embeddings:' || $1))", document_id)
        if not force and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM document_embeddings WHERE document_id = $1)", document_id):
            return False
        await conn.execute("DELETE FROM document_embeddings WHERE document_id = $1", document_id)
        # One COPY instead of a round trip per chunk.
        await conn.copy_records_to_table("document_embeddings", records=records, columns=_COLUMNS)
        await conn.execute("UPDATE documents SET embedded_at = now(), embedding_count = $2, embedding_model = $3, "
                           "updated_at = now() WHERE id = $1", document_id, len(records), model)
    return True


def nearest_sql(dims: int) -> str:
    """$1 org, $2 model, $3 the vector, $4 k. The cast to vector(N) and the dimensions filter match
    the partial HNSW index of that dimension, so PostgreSQL can use it."""
    return (
        f"SELECT document_id, chunk_index, content, start_char, end_char, "
        f"embedding::vector({dims}) <=> $3 AS distance FROM document_embeddings "
        f"WHERE org_id = $1 AND model = $2 AND dimensions = {dims} "
        f"ORDER BY embedding::vector({dims}) <=> $3 LIMIT $4"
    )


async def nearest(db: asyncpg.Pool, *, org_id: str, model: str, vector: list[float], k: int) -> list[Match]:
    """The org's `k` chunks closest to `vector` among those embedded by `model`."""
    dims = len(vector)
    if not 0 < dims <= MAX_DIMENSIONS:
        raise ValueError(f"a vector of {dims} dimensions cannot be searched")
    async with db.acquire() as conn, conn.transaction():
        # HNSW finds ef_search candidates before the org filter applies; a wider search keeps k
        # results for a small org in a large table (pgvector 0.6 has no iterative index scans).
        await conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(100, 20 * k))}")
        rows = await conn.fetch(nearest_sql(dims), org_id, model, vector, k)
    return [Match(r["document_id"], r["chunk_index"], r["content"], r["start_char"], r["end_char"],
                  float(r["distance"])) for r in rows]
