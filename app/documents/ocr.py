"""OCR off the event loop: a pool of worker processes that read text layers and run tesseract.

Tesseract and pdfium are CPU-bound (and pdfium is not thread-safe), so every page runs in a
process of its own pool, never in the loop that answers health checks and runs other queues.
Pages of all documents share the pool, one page per process at a time, so throughput is one
tesseract per core. Processes are spawned (not forked from a loop with threads running), so
like any multiprocessing user the entry script must guard its start with
`if __name__ == "__main__"` (app/__main__.py, the console script and bench/ocr.py do).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.config.features import OcrSettings
from app.documents import pages
from app.documents.pages import Kind, Layout, Limits, PageText
from app.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Extraction:
    """A file's text, page by page, and how it was obtained."""

    kind: Kind
    pages: tuple[PageText, ...]

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def ocr_pages(self) -> int:
        return sum(1 for p in self.pages if p.source == "ocr")

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages if p.text)

    @property
    def text_layer_pages(self) -> int:
        return sum(1 for p in self.pages if p.source == "text_layer")

    @property
    def confidence(self) -> float | None:
        """Mean word confidence over OCR'd words on the web app's 0-1 scale (tesseract's 0-100
        divided by 100); None when nothing was OCR'd."""
        words = sum(p.words for p in self.pages)
        return round(sum(p.confidence_sum for p in self.pages) / words / 100, 4) if words else None


@dataclass
class OcrEngine:
    """The process pool and what it has done (observable by tests and metrics)."""

    limits: Limits
    workers: int
    pages_ocrd: int = 0
    """Pages sent to tesseract since start."""
    pages_in_flight: int = 0
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: OcrSettings) -> OcrEngine:
        limits = Limits(settings.max_pages, settings.max_pixels, settings.dpi,
                        settings.page_timeout_s)
        return cls(limits, settings.workers or os.cpu_count() or 1)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=pages.init_process, initargs=(self.limits.max_pixels,),
            )
        return self._pool

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool as exc:
            # An OCR process died (killed, out of memory): the next call gets a fresh pool.
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise TransientError(f"an OCR process died while reading the document: {exc}") from exc

    async def extract(self, data: bytes, *, language: str, perform_ocr: bool = True) -> Extraction:
        """Text layers where the file has them, tesseract for the other pages (if `perform_ocr`)."""
        async with _spooled(data) as path:
            layout: Layout = await self._run(pages.inspect, path, self.limits)
            read = await _all([self._page(path, layout.kind, i, layer, language, perform_ocr)
                               for i, layer in enumerate(layout.text_layers)])
            return Extraction(layout.kind, tuple(read))

    async def _page(self, path: Path, kind: Kind, index: int, layer: str | None, language: str,
                    perform_ocr: bool) -> PageText:
        if layer is not None:
            return PageText(layer.strip(), "text_layer")
        if not perform_ocr:
            return PageText("", "none")
        self.pages_ocrd += 1
        self.pages_in_flight += 1
        try:
            return await self._run(pages.ocr_page, path, kind, index, self.limits, language)
        finally:
            self.pages_in_flight -= 1

    async def page_images(self, data: bytes, indexes: Sequence[int], *, max_side_px: int = 1600) -> list[bytes]:
        """PNG renderings of some pages, for a vision model."""
        async with _spooled(data) as path:
            layout: Layout = await self._run(pages.inspect, path, self.limits)
            wanted = [i for i in indexes if i < layout.page_count]
            return await _all([self._run(pages.page_png, path, layout.kind, i, max_side_px) for i in wanted])

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


async def _all(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Every result in order; on the first failure the pages still queued are withdrawn, so a
    doomed document does not keep the pool busy (gather alone would let them run)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


class _spooled:
    """The bytes in a temporary file for the life of the block (pool tasks open it by path)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.path: Path | None = None

    async def __aenter__(self) -> Path:
        self.path = await asyncio.to_thread(_write_temp, self.data)
        return self.path

    async def __aexit__(self, *exc: object) -> None:
        if self.path is not None:
            await asyncio.to_thread(self.path.unlink, missing_ok=True)


def _write_temp(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix="workhorse-doc-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)
