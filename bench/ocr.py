"""OCR throughput: pages/minute through the worker against `tesseract` run directly on the same
pages with the same parallelism, and pages/s of a PDF read from its text layer.

The worker (`python -m app --queues document-processing`) runs OCR_WORKERS=PARALLEL processes;
the direct run keeps PARALLEL `tesseract` processes busy. Both do the same work on the same A4
pages at 300 dpi: OMP_THREAD_LIMIT=1, TSV output (words with confidences, which the worker
needs) and nice 10 (the worker's OCR processes yield to its event loop). The worker is warmed
up (its OCR processes spawned) by one small document before the clock starts.

Several rounds, each the direct run and then the worker's on the same pages, back to back: the
ratio is the median of the rounds' ratios, so a minute in which the shared machine slows down
weighs on both sides of one ratio, not on one side of the only one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import asyncpg

from app.documents.pages import NICE
from bench.env import BenchEnv, flush, run_alone
from bench.report import Row, median, median_of_rounds
from bench.workhorse import Worker, enqueuer, running
from tests.fakes.documents import encode, page_image, text_pdf

PARALLEL = 2
PAGES = 12
QUICK_PAGES = 4
ROUNDS = 3
TEXT_LAYER_PAGES = 500
GOAL_RATIO = 0.9
_LINES = [f"Clause {n}: the supplier delivers the goods described in schedule {n} within thirty days "
          for n in range(1, 41)]


def a4_page(n: int) -> bytes:
    """A dense A4 page at 300 dpi (2480 px wide), different on every page."""
    return encode([page_image([f"Page {n}", *_LINES], width=2480, font_px=38)], "PNG")


async def direct_pages_per_min(paths: list[Path]) -> float:
    """`nice -n 10 tesseract PAGE stdout tsv`, PARALLEL at a time."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    slots = asyncio.Semaphore(PARALLEL)

    async def one(path: Path) -> None:
        async with slots:
            proc = await asyncio.create_subprocess_exec(
                "nice", "-n", str(NICE), "tesseract", str(path), "stdout", "tsv", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            if await proc.wait() != 0:
                raise RuntimeError(f"tesseract failed on {path}")

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in paths))
    return len(paths) / (time.perf_counter() - started) * 60


async def add_documents(db: asyncpg.Connection, worker: Worker, files: dict[str, bytes]) -> None:
    """Store the files and (re)set their documents to PENDING."""
    storage = worker.home / "storage"
    for doc_id, data in files.items():
        (storage / "bench").mkdir(parents=True, exist_ok=True)
        (storage / "bench" / doc_id).write_bytes(data)
        await db.execute("INSERT INTO documents (id, org_id, storage_key) VALUES ($1, 'bench', $2) "
                         "ON CONFLICT (id) DO UPDATE SET status = 'PENDING', storage_key = EXCLUDED.storage_key",
                         doc_id, f"bench/{doc_id}")


async def process_all(env: BenchEnv, db: asyncpg.Connection, doc_ids: list[str]) -> float:
    """Seconds from enqueueing the documents until every one is COMPLETED."""
    async with enqueuer(env) as enq:
        started = time.perf_counter()
        for doc_id in doc_ids:
            await enq.enqueue("process_document", {"documentId": doc_id, "orgId": "bench"})
        async with asyncio.timeout(300):
            while True:
                rows = await db.fetch("SELECT status FROM documents WHERE id = ANY($1)", doc_ids)
                if any(r["status"] == "FAILED" for r in rows):
                    raise RuntimeError("a benchmark document FAILED")
                if all(r["status"] == "COMPLETED" for r in rows):
                    return time.perf_counter() - started
                await asyncio.sleep(0.05)


async def paired_figures(env: BenchEnv, pages: list[bytes], paths: list[Path],
                         rounds: int) -> tuple[list[tuple[float, float]], float]:
    """Per round (direct pages/minute, worker pages/minute), and the text-layer pages/s, through
    one worker process."""
    await flush(env.redis_url)
    extra = {"OCR_WORKERS": str(PARALLEL), "OCR_MAX_PAGES": str(TEXT_LAYER_PAGES),
             "DOCUMENT_PROCESSING_CONCURRENCY": str(PARALLEL + 1)}
    async with running(env, ["document-processing"], **extra) as worker:
        await worker.wait_ready()
        db = await asyncpg.connect(env.database_url)
        try:
            scans = {f"bench-ocr-{n}": page for n, page in enumerate(pages)}
            layer = text_pdf([[f"Page {n}", *_LINES[:20]] for n in range(TEXT_LAYER_PAGES)])
            await add_documents(db, worker, {**scans, "bench-warm-up": encode([page_image(["warm"])], "PNG"),
                                             "bench-text-layer": layer})
            await process_all(env, db, ["bench-warm-up"])  # spawns the worker's OCR processes
            paired = []
            for n in range(rounds):
                if n:
                    await add_documents(db, worker, scans)
                direct = await direct_pages_per_min(paths)
                paired.append((direct, len(pages) / await process_all(env, db, list(scans)) * 60))
            layer_s = await process_all(env, db, ["bench-text-layer"])
        finally:
            await db.execute("DELETE FROM documents WHERE org_id = 'bench'")
            await db.close()
    return paired, TEXT_LAYER_PAGES / layer_s


async def run(env: BenchEnv, *, quick: bool = False) -> list[Row]:
    """The benchmark's rows: worker OCR, direct tesseract, and the text-layer rate."""
    pages = QUICK_PAGES if quick else PAGES
    rounds = 1 if quick else ROUNDS
    images = [a4_page(n) for n in range(pages)]
    with tempfile.TemporaryDirectory(prefix="wh-bench-ocr-") as directory:
        paths = [Path(directory) / f"page-{n}.png" for n in range(pages)]
        for path, data in zip(paths, images, strict=True):
            path.write_bytes(data)
        paired, text_layer = await paired_figures(env, images, paths, rounds)
    ratio, spread = median_of_rounds([worker / direct for direct, worker in paired])
    through_worker, direct = median([w for _, w in paired]), median([d for d, _ in paired])
    label = f"OCR ({pages} A4 pages, {PARALLEL} at a time, {rounds} round{'s' if rounds > 1 else ''})"
    return [
        Row(label, "through the worker", f"{through_worker:.1f} pages/min ({ratio:.2f} of direct){spread}",
            f">= {GOAL_RATIO} of direct", ratio >= GOAL_RATIO),
        Row(label, "tesseract directly (TSV, nice 10)", f"{direct:.1f} pages/min"),
        Row(f"text layer ({TEXT_LAYER_PAGES}-page PDF)", "through the worker, no OCR", f"{text_layer:,.0f} pages/s"),
    ]


def main() -> None:
    run_alone(run, "OMP_THREAD_LIMIT=1 for every tesseract")


if __name__ == "__main__":
    main()
