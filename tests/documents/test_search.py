"""Similarity search: a question is embedded like the chunks and answered with the org's
closest chunks, from Python (`app.documents.search.similar`) and from `workhorse search`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from app.config import PROJECT_ROOT, Settings
from app.documents.search import similar
from app.documents.vectors import nearest_sql
from app.errors import PermanentError
from app.jobs.resources import Resources
from tests.fakes import documents as files
from tests.fakes.openai import FakeOpenAI, embed
from tests.support.worker import in_process_worker, subprocess_env

TOPICS = {
    "billing": "The invoice lists an anvil and a hammer. Payment is due within thirty days of the invoice date.",
    "shipping": "Parcels leave the warehouse every Tuesday. Tracking numbers arrive by email after dispatch.",
    "people": "New employees meet their mentor on the first day. Holidays are booked through the HR portal.",
}
QUESTION = "When is payment of the invoice due?"


async def embed_all(res: Resources, docs: dict[str, tuple[str, str]]) -> None:
    """Store and embed each (org, text) document through the embedding worker."""
    for doc_id, (org, text) in docs.items():
        await files.add_document(res, doc_id, None, org_id=org, text=text)
        queued = await res.enqueuer.enqueue("embed_document", {"documentId": doc_id, "orgId": org})
        assert queued is not None
        async with asyncio.timeout(20):
            while await res.enqueuer.job(queued.job_id, "document-embedding").outcome() is None:
                await asyncio.sleep(0.05)


async def test_the_closest_chunk_of_the_org_comes_first(
        make_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """The question about payment finds the billing document first, distances ascend, and another
    org's document, even one repeating the question word for word, is never returned."""
    settings = make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url)
    docs = {topic: ("org-1", text) for topic, text in TOPICS.items()}
    docs["other-org"] = ("org-2", QUESTION)
    async with in_process_worker(settings, ["document-embedding"]) as worker:
        await embed_all(res, docs)
        matches = await similar(worker.res.db, worker.res.providers.embedding, "org-1", QUESTION, k=3)
        only_one = await similar(worker.res.db, worker.res.providers.embedding, "org-1", QUESTION, k=1)
    assert matches[0].document_id == "billing"
    assert {m.document_id for m in matches} == set(TOPICS)
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert matches[0].content == TOPICS["billing"] and (matches[0].start_char, matches[0].chunk_index) == (0, 0)
    assert [m.document_id for m in only_one] == ["billing"]


async def test_search_query_can_use_the_hnsw_index(res: Resources) -> None:
    """The query's cast and filter match the partial HNSW index of its dimension: asked for rows
    in distance order without sorting, PostgreSQL reads that index (an empty table would
    otherwise be scanned, so the alternatives are switched off)."""
    async with res.db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                           "SET LOCAL enable_sort = off")
        plan = await conn.fetch("EXPLAIN " + nearest_sql(1536), "org-1", "m", embed("x"), 5)
    assert "document_embeddings_hnsw_1536" in "\n".join(r[0] for r in plan)


async def test_search_without_a_provider_says_why(res: Resources) -> None:
    """With no embedding provider the search is refused with the reason, not an empty answer."""
    with pytest.raises(PermanentError, match="cannot search: no embedding provider"):
        await similar(res.db, res.providers.embedding, "org-1", QUESTION)


async def test_workhorse_search_prints_the_matches(
        make_env: Callable[..., dict[str, str]], res: Resources, fake_openai: FakeOpenAI) -> None:
    """`workhorse search --org ORG --json "question"` prints the top chunks with document and distance."""
    env = make_env(openai_api_key="sk-test", openai_base_url=fake_openai.base_url)
    async with in_process_worker(Settings.load(env), ["document-embedding"]):
        await embed_all(res, {topic: ("org-1", text) for topic, text in TOPICS.items()})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "search", "--org", "org-1", "-k", "2", "--json", QUESTION,
        env=subprocess_env(env), cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    found: list[dict[str, Any]] = json.loads(out)
    assert len(found) == 2 and found[0]["documentId"] == "billing"
    assert set(found[0]) == {"documentId", "chunkIndex", "distance", "startChar", "endChar", "content"}
