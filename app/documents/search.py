"""Similarity search: which chunks of an org's documents are closest to a question."""

from __future__ import annotations

import asyncpg

from app.documents import vectors
from app.documents.vectors import Match
from app.errors import PermanentError
from app.providers.embedding import EmbeddingProvider

MAX_K = 1000


async def similar(db: asyncpg.Pool, provider: EmbeddingProvider | None, org_id: str, text: str, k: int = 5, *,
                  why_no_provider: str = "no embedding provider") -> list[Match]:
    """The top-k chunks by cosine distance, embedded with the same provider and model as the jobs."""
    if provider is None:
        raise PermanentError(f"cannot search: {why_no_provider}")
    if not text.strip():
        raise PermanentError("the question is empty")
    if not 1 <= k <= MAX_K:
        raise PermanentError(f"k must be between 1 and {MAX_K}, got {k}")
    [vector] = (await provider.embed([text])).vectors
    return await vectors.nearest(db, org_id=org_id, model=provider.model, vector=vector, k=k)


__all__ = ["Match", "similar"]
