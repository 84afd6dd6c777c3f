"""The OCR engine (app/documents/ocr.py): real tesseract in a pool of processes, so a page past
OCR_PAGE_TIMEOUT_S is stopped, the event loop keeps answering while pages are read, and a killed
OCR process costs one transient failure, not the pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

import aiohttp
import pytest

from app.config import Settings
from app.documents.ocr import OcrEngine
from app.documents.pages import Limits
from app.errors import TransientError
from app.jobs.resources import Resources
from tests.fakes import documents as files
from tests.support.documents import QUEUE, engine, process, row
from tests.support.worker import in_process_worker

pytestmark = pytest.mark.usefixtures("tesseract")


async def test_a_page_past_the_tesseract_timeout_fails_the_document_once(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """OCR_PAGE_TIMEOUT_S bounds tesseract on each page: past it tesseract is stopped and the
    document FAILED, naming the page and the setting, after one attempt (the page would be as
    slow again)."""
    await files.add_document(res, "dense", files.png(["A page tesseract gets no time for"]))
    async with in_process_worker(make_settings(ocr_page_timeout_s=0.001), [QUEUE]):
        ok, _ = await process(res, "dense")
    doc = await row(res, "dense")
    assert not ok and doc["status"] == "FAILED"
    assert doc["processing_error"] == "tesseract took longer than OCR_PAGE_TIMEOUT_S=0.001 s on page 1 and was stopped"
    [letter] = await res.dlq.list()
    assert (letter.attempts, letter.error_class) == (1, "PermanentError")


async def test_health_answers_within_100ms_while_two_ocr_jobs_run(settings: Settings, res: Resources) -> None:
    """OCR runs in other processes: while two documents are being OCR'd the sidecar's health
    endpoint, on the same event loop as the worker, keeps answering within 100 ms."""
    lines = [f"Line {n} of a dense page that keeps tesseract busy for a while" for n in range(30)]
    for n in range(2):
        await files.add_document(res, f"busy-{n}", files.tiff([lines, lines]))
    latencies: list[float] = []
    async with in_process_worker(settings, [QUEUE]) as worker, aiohttp.ClientSession() as http:
        jobs = [asyncio.create_task(process(res, f"busy-{n}")) for n in range(2)]
        url = f"http://127.0.0.1:{settings.health.port}/health/live"
        async with asyncio.timeout(30):
            while not all(j.done() for j in jobs):
                if "ocr" in worker.res.providers.__dict__ and engine(worker).pages_in_flight >= 2:
                    started = time.perf_counter()
                    async with http.get(url) as reply:
                        assert reply.status == 200
                    latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
        assert [(await j)[0] for j in jobs] == [True, True]
    print(f"health latency while OCR runs: n={len(latencies)} max={max(latencies) * 1000:.1f} ms")
    assert len(latencies) >= 10, latencies
    assert max(latencies) < 0.1, sorted(latencies)[-5:]


async def test_a_killed_ocr_process_is_transient_and_the_pool_recovers() -> None:
    """An OCR process that dies mid-page (OOM killer, kill -9) fails that read transiently (it
    will be retried), and the next read gets a fresh pool instead of a broken one."""
    ocr = OcrEngine(Limits(max_pages=5, max_pixels=40_000_000, dpi=300, page_timeout_s=60), workers=1)
    page = files.png([f"Line {n} of a page that takes tesseract a moment" for n in range(30)])
    try:
        reading = asyncio.create_task(ocr.extract(page, language="eng"))
        async with asyncio.timeout(10):
            while ocr.pages_in_flight == 0 or not multiprocessing.active_children():
                await asyncio.sleep(0.01)
        for child in multiprocessing.active_children():
            if child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(TransientError, match="OCR process died"):
            await reading
        again = await ocr.extract(files.png(["Back to work"]), language="eng")
        assert again.text == "Back to work"
    finally:
        await ocr.aclose()
