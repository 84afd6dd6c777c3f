"""The document-embedding queue: token chunks, batched requests to an OpenAI-compatible server
(the real `openai` client against tests/fakes/openai.py), vectors in pgvector, and failures."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.config import Settings
from app.documents.chunking import MAX_TOKENS, MIN_TOKENS, chunk_text, count_tokens
from app.errors import PermanentError, RateLimited, TransientError
from app.jobs.resources import Resources
from app.providers.breakers import Breakers, State
from app.providers.embedding import local_available
from app.providers.openai import OpenAIClient
from tests.fakes import documents as files
from tests.fakes.openai import FakeOpenAI
from tests.support.services import free_port
from tests.support.worker import in_process_worker

QUEUE = "document-embedding"
SENTENCES = ["The invoice total is due within thirty days.", "Our warehouse ships anvils every Tuesday.",
             "Customers praise the friendly support team.", "Quarterly revenue grew in every region."]


def prose(sentences: int) -> str:
    return "\n".join(" ".join(SENTENCES[(i + j) % 4] for j in range(3)) for i in range(sentences))


def prose_of_chunks(count: int, *, size: int, overlap: int) -> str:
    """The shortest prose that chunks into `count` chunks (found by bisection over its length)."""
    low, high = 1, 4000
    while low < high:
        mid = (low + high) // 2
        if len(chunk_text(prose(mid), size=size, overlap=overlap)) >= count:
            high = mid
        else:
            low = mid + 1
    return prose(low)


async def embed(res: Resources, doc_id: str, *, force: bool = False, timeout_s: float = 30) -> tuple[bool, Any]:
    queued = await res.enqueuer.enqueue("embed_document", {"documentId": doc_id, "orgId": "org-1", "force": force})
    assert queued is not None
    job = res.enqueuer.job(queued.job_id, QUEUE)
    async with asyncio.timeout(timeout_s):
        while (info := await job.outcome()) is None:
            await asyncio.sleep(0.05)
    return info.success, info.result


def test_chunks_keep_order_offsets_overlap_and_size_bounds() -> None:
    """~size tokens per chunk, ending at a sentence when possible, `overlap` tokens shared, exact
    character offsets, and a short tail merged into the chunk before it."""
    text = prose(120)
    chunks = chunk_text(text, size=500, overlap=50)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert text[c.start_char:c.end_char] == c.content
        assert MIN_TOKENS <= c.token_count <= MAX_TOKENS and c.token_count == count_tokens(c.content)
    assert all(c.content.rstrip().endswith(".") for c in chunks)
    assert all(250 < c.token_count <= 500 for c in chunks[:-1])
    for a, b in itertools.pairwise(chunks):
        assert a.start_char < b.start_char < a.end_char  # they overlap, in order
    assert chunks[-1].end_char == len(text)


@pytest.mark.parametrize(("text", "sizes"), [
    ("", []),
    ("One short sentence.", [4]),
    (prose(25), None),  # just over one window: the tail is too short to stand alone
])
def test_short_texts_make_few_chunks(text: str, sizes: list[int] | None) -> None:
    """Empty text has no chunk; text under one window is one chunk; a tail under MIN_TOKENS joins."""
    chunks = chunk_text(text, size=500, overlap=50)
    if sizes is not None:
        assert [c.token_count for c in chunks] == sizes
    else:
        assert len(chunks) == 1 and 500 < chunks[0].token_count < 500 + MIN_TOKENS


def test_chunk_size_outside_bounds_is_refused() -> None:
    """Chunk sizes stay within 100-1000 tokens."""
    with pytest.raises(ValueError, match="chunk size"):
        chunk_text("text", size=2000)


async def test_250_chunks_are_embedded_in_exactly_3_requests(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """Batches hold at most 100 chunks: 250 chunks make 3 requests (100, 100, 50), and the 250
    vectors land in pgvector with their order, offsets, model and dimension."""
    settings = openai_settings(chunk_tokens=100, chunk_overlap_tokens=10)
    text = prose_of_chunks(250, size=100, overlap=10)
    assert len(chunk_text(text, size=100, overlap=10)) == 250
    await files.add_document(res, "big", None, text=text)
    async with in_process_worker(settings, [QUEUE]):
        ok, result = await embed(res, "big")
    assert ok, result
    assert [len(b["input"]) for b in fake_openai.bodies("/v1/embeddings")] == [100, 100, 50]
    assert {b["model"] for b in fake_openai.bodies("/v1/embeddings")} == {"text-embedding-3-small"}
    assert (result["chunksCreated"], result["embeddingsGenerated"], result["dimensions"]) == (250, 250, 1536)
    assert result["tokens"] > 0 and result["averageChunkTokens"] <= 100 and result["processingTimeMs"] >= 0
    rows = await res.db.fetch("SELECT chunk_index, start_char, end_char, content, dimensions, model "
                              "FROM document_embeddings WHERE document_id = 'big' ORDER BY chunk_index")
    assert [r["chunk_index"] for r in rows] == list(range(250))
    assert all(text[r["start_char"]:r["end_char"]] == r["content"] for r in rows)
    assert {(r["dimensions"], r["model"]) for r in rows} == {(1536, "text-embedding-3-small")}
    doc = await res.db.fetchrow("SELECT embedded_at, embedding_count, embedding_model FROM documents WHERE id = 'big'")
    assert doc is not None and doc["embedded_at"] is not None
    assert (doc["embedding_count"], doc["embedding_model"]) == (250, "text-embedding-3-small")


async def test_existing_embeddings_are_skipped_unless_forced(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """A second run finds the vectors and finishes `skipped`, leaving the row's embedding record as
    it was; `force` replaces them all at once, and the record with them."""
    await files.add_document(res, "doc", None, text=prose(40))
    record = "SELECT embedded_at, embedding_count FROM documents WHERE id = 'doc'"
    async with in_process_worker(openai_settings(), [QUEUE]):
        ok, first = await embed(res, "doc")
        before = await res.db.fetch("SELECT id FROM document_embeddings WHERE document_id = 'doc'")
        first_record = await res.db.fetchrow(record)
        ok_again, again = await embed(res, "doc")
        assert ok_again and again["status"] == "skipped" and "already has embeddings" in again["reason"]
        assert await res.db.fetchrow(record) == first_record
        await res.db.execute("UPDATE documents SET ocr_text = $1 WHERE id = 'doc'", prose(80))
        ok_forced, forced = await embed(res, "doc", force=True)
    assert ok and ok_forced and fake_openai.count("/v1/embeddings") == 2
    after = await res.db.fetch("SELECT id FROM document_embeddings WHERE document_id = 'doc'")
    assert len(before) == first["chunksCreated"] and len(after) == forced["chunksCreated"] > len(before)
    assert not {r["id"] for r in before} & {r["id"] for r in after}
    forced_record = await res.db.fetchrow(record)
    assert first_record is not None and forced_record is not None
    assert first_record["embedding_count"] == first["chunksCreated"]
    assert forced_record["embedding_count"] == forced["chunksCreated"]
    assert forced_record["embedded_at"] > first_record["embedded_at"]


async def test_the_row_record_and_the_vectors_commit_together(
        openai_settings: Callable[..., Settings], res: Resources) -> None:
    """The row's embedding record is written in the vectors' transaction: when the row cannot be
    written, no vector is stored either (and the job fails)."""
    await files.add_document(res, "refused", None, text=prose(10))
    await res.db.execute("""
        CREATE FUNCTION test_refuse_embedding_record() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'row refused on purpose'; END $$;
        CREATE TRIGGER test_refuse_embedding_record BEFORE UPDATE OF embedding_count ON documents
        FOR EACH ROW EXECUTE FUNCTION test_refuse_embedding_record();""")
    try:
        async with in_process_worker(openai_settings(document_embedding_attempts=1), [QUEUE]):
            ok, _ = await embed(res, "refused")
    finally:
        await res.db.execute("DROP TRIGGER test_refuse_embedding_record ON documents;"
                             "DROP FUNCTION test_refuse_embedding_record()")
    assert not ok
    assert await res.db.fetchval("SELECT count(*) FROM document_embeddings") == 0
    assert await res.db.fetchval("SELECT embedded_at FROM documents WHERE id = 'refused'") is None


async def test_document_without_text_fails_clearly(openai_settings: Callable[..., Settings], res: Resources) -> None:
    """A document with no text is a permanent failure that says so, after one attempt."""
    await files.add_document(res, "empty", None, text="  ")
    async with in_process_worker(openai_settings(), [QUEUE]):
        ok, _ = await embed(res, "empty")
    assert not ok
    [letter] = await res.dlq.list()
    assert letter.attempts == 1 and "document empty has no text to embed" in letter.error_message


@pytest.mark.parametrize(("env", "reason"), [
    ({"embedding_provider": "none", "openai_api_key": "sk-test"}, "EMBEDDING_PROVIDER=none"),
    ({"embedding_provider": "openai"}, "EMBEDDING_PROVIDER=openai but OPENAI_API_KEY is not set"),
    pytest.param({"embedding_provider": "auto"},
                 "no embedding provider: set OPENAI_API_KEY or install the [local] extra",
                 marks=pytest.mark.skipif(local_available(), reason="the [local] extra is installed")),
])
async def test_without_a_provider_the_job_skips_with_the_reason(
        make_settings: Callable[..., Settings], res: Resources, env: dict[str, str], reason: str) -> None:
    """No provider configured is not a failure: the job finishes `skipped` and says why."""
    await files.add_document(res, "has-text", None, text=prose(3))
    async with in_process_worker(make_settings(**env), [QUEUE]):
        assert await embed(res, "has-text") == (True, {"status": "skipped", "reason": reason})


async def test_429_is_retried_after_retry_after_then_succeeds(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """A 429 with Retry-After defers the job by that long (not sooner); the next attempt succeeds."""
    await files.add_document(res, "limited", None, text=prose(10))
    fake_openai.fail_next(1, 429, {"Retry-After": "90"})
    async with in_process_worker(openai_settings(poll_fallback_ms=50), [QUEUE]):
        queued = await res.enqueuer.enqueue("embed_document", {"documentId": "limited", "orgId": "org-1"})
        assert queued is not None
        async with asyncio.timeout(10):
            while fake_openai.count("/v1/embeddings") < 1 or not await res.redis.zscore(QUEUE, queued.job_id):
                await asyncio.sleep(0.02)
        run_at_s = (await res.redis.zscore(QUEUE, queued.job_id) or 0) / 1000
        assert 88 < run_at_s - time.time() <= 90
        # Bring the deferred run forward instead of waiting 90 s; the worker polls every 50 ms.
        await res.redis.zadd(QUEUE, {queued.job_id: int(time.time() * 1000)})
        ok, result = await embed_outcome(res, queued.job_id)
    assert ok, result
    assert fake_openai.count("/v1/embeddings") == 2 and await res.dlq.list() == []


async def embed_outcome(res: Resources, job_id: str) -> tuple[bool, Any]:
    job = res.enqueuer.job(job_id, QUEUE)
    async with asyncio.timeout(20):
        while (info := await job.outcome()) is None:
            await asyncio.sleep(0.05)
    return info.success, info.result


async def test_500_burst_opens_the_breaker_then_the_job_completes(
        openai_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """Consecutive 500s open the openai breaker; while open no request goes out and no attempt is
    used; the half-open probe succeeds and the job completes without a dead letter."""
    settings = openai_settings(breaker_failure_threshold=2, breaker_reset_timeout_s=1,
                               document_embedding_base_delay_s=0.05, document_embedding_attempts=3)
    await files.add_document(res, "burst", None, text=prose(10))
    fake_openai.fail_next(2, 500)
    states: list[State] = []
    async with in_process_worker(settings, [QUEUE]) as worker:
        job = asyncio.create_task(embed(res, "burst"))
        while not job.done():
            states.append(worker.res.breakers["openai"].state)
            if states[-1] is State.OPEN:
                assert fake_openai.count("/v1/embeddings") == 2
            await asyncio.sleep(0.01)
        ok, result = await job
    assert ok, result
    assert State.OPEN in states and worker.res.breakers["openai"].state is State.CLOSED
    assert fake_openai.count("/v1/embeddings") == 3 and await res.dlq.list() == []


async def test_openai_errors_are_translated_into_the_error_tree(fake_openai: FakeOpenAI) -> None:
    """429 → RateLimited with Retry-After; 5xx and a refused connection → TransientError; other
    4xx → PermanentError (and do not count against the breaker)."""
    settings = Settings.load({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.base_url})
    breakers = Breakers(failure_threshold=10)
    client = OpenAIClient(settings.openai, breakers)
    try:
        fake_openai.fail_next(1, 429, {"Retry-After": "7"})
        with pytest.raises(RateLimited) as limited:
            await client.embed(["x"], model="m")
        assert limited.value.retry_after_s == 7
        fake_openai.fail_next(1, 503)
        with pytest.raises(TransientError, match="503"):
            await client.embed(["x"], model="m")
        fake_openai.fail_next(1, 400)
        with pytest.raises(PermanentError, match="400 scripted 400"):
            await client.embed(["x"], model="m")
        assert breakers["openai"].failures == 0  # the 400 proved the provider up
        assert len((await client.embed(["a b", "c"], model="m")).vectors) == 2
    finally:
        await client.aclose()
    down = Settings.load({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    refused = OpenAIClient(down.openai, breakers)
    try:
        with pytest.raises(TransientError, match="APIConnectionError"):
            await refused.embed(["x"], model="m")
    finally:
        await refused.aclose()
