"""Reading a file's pages: text layers, limits, rendering and tesseract — run inside OCR processes.

Everything here is synchronous and CPU-bound, and pdfium is not thread-safe, so app.documents.ocr
calls these functions in worker processes of its own, never on the event loop. Each function
takes the path of a spooled copy of the file (not its bytes) so a page task pickles a few
bytes, not the document. Errors are ours (PermanentError) so they cross the process boundary.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageSequence, UnidentifiedImageError

from app.errors import PermanentError

Kind = Literal["pdf", "png", "jpeg", "tiff"]
Source = Literal["text_layer", "ocr", "none"]

_MAGIC: tuple[tuple[bytes, Kind], ...] = (
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
NICE = 10
"""Priority of OCR processes: the event loop (health checks, other queues) wins the CPU."""
# What pytesseract raises (a bare RuntimeError) after killing a tesseract that ran past `timeout`.
_TESSERACT_TIMEOUT = "Tesseract process timeout"
# A text layer with fewer visible characters than this is a scan's stray artefact, not text.
_MIN_TEXT_LAYER_CHARS = 3


@dataclass(frozen=True, slots=True)
class Limits:
    max_pages: int
    max_pixels: int
    dpi: int
    page_timeout_s: float
    """How long tesseract may take over one page (OCR_PAGE_TIMEOUT_S)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """What a file holds before any OCR: its kind and, per page, its text layer (or None)."""

    kind: Kind
    text_layers: tuple[str | None, ...]

    @property
    def page_count(self) -> int:
        return len(self.text_layers)


@dataclass(frozen=True, slots=True)
class PageText:
    text: str
    source: Source
    words: int = 0
    confidence_sum: float = 0.0


def init_process(max_pixels: int) -> None:
    """Run once in each OCR process: one thread per tesseract, and lower priority than the loop."""
    # Measured: 1.9 s per A4 page with one thread, 10-12 s with OpenMP's default on 2 cores.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    os.nice(NICE)
    # Pillow's own bomb guard, at our limit and as an error: it fires before any pixel is decoded.
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def sniff(head: bytes) -> Kind:
    if not head:
        raise PermanentError("the file is empty (0 bytes)")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    raise PermanentError("unsupported file type: expected a PDF, PNG, JPEG or TIFF")


def inspect(path: Path, limits: Limits) -> Layout:
    """The file's kind and pages; PermanentError if unreadable or above the limits."""
    with path.open("rb") as f:
        kind = sniff(f.read(8))
    if kind == "pdf":
        return Layout(kind, _pdf_text_layers(path, limits))
    with _open_image(path) as image:
        frames = getattr(image, "n_frames", 1)
        _check_pages(frames, limits)
        for frame in ImageSequence.Iterator(image):
            _check_pixels(frame.width * frame.height, limits)
    return Layout(kind, (None,) * frames)


def ocr_page(path: Path, kind: Kind, index: int, limits: Limits, language: str) -> PageText:
    """Tesseract's reading of one page, with its words' confidences."""
    import pytesseract

    image = _page_image(path, kind, index, limits.dpi)
    # Handed over as uncompressed PGM: pytesseract's default (PNG) costs a zlib pass per page.
    with tempfile.NamedTemporaryFile(prefix="workhorse-page-", suffix=".pgm") as pgm:
        image.save(pgm, format="PPM")
        pgm.flush()
        try:
            data = pytesseract.image_to_data(pgm.name, lang=language, output_type=pytesseract.Output.DICT,
                                             timeout=limits.page_timeout_s)
        except pytesseract.TesseractNotFoundError:
            raise RuntimeError("tesseract is not installed on this machine") from None
        except pytesseract.TesseractError as exc:
            raise PermanentError(
                f"tesseract failed on page {index + 1} (language {language!r}): {exc.message}") from None
        except RuntimeError as exc:
            if str(exc) != _TESSERACT_TIMEOUT:
                raise
            # Permanent, not transient: tesseract's time is a property of the page (size, density,
            # noise), and each page has a whole OCR process to itself (one page per process, niced
            # under the loop, never more processes than OCR_WORKERS), so a retry would most likely
            # spend the same time again, three times over, while other documents wait for the pool.
            # An operator who wants such pages read raises OCR_PAGE_TIMEOUT_S and re-queues them.
            raise PermanentError(
                f"tesseract took longer than OCR_PAGE_TIMEOUT_S={limits.page_timeout_s:g} s on page "
                f"{index + 1} and was stopped") from None
    return _assemble(data)


def page_png(path: Path, kind: Kind, index: int, max_side_px: int) -> bytes:
    """One page as a PNG no larger than `max_side_px`, for a vision model."""
    image = _page_image(path, kind, index, dpi=150)
    image.thumbnail((max_side_px, max_side_px))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _pdf_text_layers(path: Path, limits: Limits) -> tuple[str | None, ...]:
    import pypdfium2 as pdfium

    pdf = _open_pdf(path)
    try:
        _check_pages(len(pdf), limits)
        layers: list[str | None] = []
        for index in range(len(pdf)):
            page = pdf[index]
            text = page.get_textpage().get_text_bounded()
            if len(text.strip()) >= _MIN_TEXT_LAYER_CHARS:
                layers.append(text)
            else:
                width, height = page.get_size()
                _check_pixels(int(width * limits.dpi / 72) * int(height * limits.dpi / 72), limits)
                layers.append(None)
        return tuple(layers)
    except pdfium.PdfiumError as exc:
        raise PermanentError(f"the PDF cannot be read: {exc}") from None
    finally:
        pdf.close()


def _page_image(path: Path, kind: Kind, index: int, dpi: int) -> Image.Image:
    if kind == "pdf":
        pdf = _open_pdf(path)
        try:
            image: Image.Image = pdf[index].render(scale=dpi / 72, grayscale=True).to_pil()
            return image
        finally:
            pdf.close()
    with _open_image(path) as image:
        image.seek(index)
        try:
            return image.convert("L")
        except (OSError, SyntaxError, ValueError) as exc:
            raise PermanentError(f"the image cannot be decoded: {exc}") from None


def _open_pdf(path: Path):  # type: ignore[no-untyped-def]  # pypdfium2 has no type information
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise PermanentError(f"the PDF cannot be read: {exc}") from None


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentError(f"the image is above OCR_MAX_PIXELS={Image.MAX_IMAGE_PIXELS}: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PermanentError(f"the image cannot be read: {exc}") from None


def _check_pages(pages: int, limits: Limits) -> None:
    if pages > limits.max_pages:
        raise PermanentError(f"the file has {pages} pages, above OCR_MAX_PAGES={limits.max_pages}")
    if pages == 0:
        raise PermanentError("the file has no pages")


def _check_pixels(pixels: int, limits: Limits) -> None:
    if pixels > limits.max_pixels:
        raise PermanentError(f"a page has {pixels} pixels, above OCR_MAX_PIXELS={limits.max_pixels}")


def _assemble(data: dict[str, list[object]]) -> PageText:
    """Words in reading order, one line per tesseract line, a blank line between paragraphs."""
    lines: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    words, confidence_sum = 0, 0.0
    for i, word in enumerate(data["text"]):
        text = str(word).strip()
        conf = float(str(data["conf"][i]))
        if not text or conf < 0:
            continue
        key = (int(str(data["block_num"][i])), int(str(data["par_num"][i])), int(str(data["line_num"][i])))
        lines[key].append(text)
        words += 1
        confidence_sum += conf
    out: list[str] = []
    previous: tuple[int, int] | None = None
    for (block, par, _), line_words in lines.items():
        if previous is not None and previous != (block, par):
            out.append("")
        out.append(" ".join(line_words))
        previous = (block, par)
    return PageText("\n".join(out), "ocr", words, confidence_sum)
