"""Files like the ones users upload, made on the spot: text drawn on images, scanned and
text-layer PDFs, multi-page TIFFs; and a documents row pointing at one in storage."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from app.jobs.resources import Resources
from app.providers.storage import LocalStorage

_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _FONT.exists():
        return ImageFont.truetype(str(_FONT), px)
    return ImageFont.load_default(size=px)


def page_image(lines: list[str], *, width: int = 1600, font_px: int = 44) -> Image.Image:
    """Black text on white, large enough for tesseract to read without doubt."""
    line_px = int(font_px * 1.6)
    image = Image.new("L", (width, 2 * font_px + line_px * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((font_px, font_px + i * line_px), line, fill=0, font=_font(font_px))
    return image


def encode(images: list[Image.Image], fmt: str) -> bytes:
    out = io.BytesIO()
    first, *rest = images
    extra = {"save_all": True, "append_images": rest} if rest else {}
    if fmt == "PDF":
        extra["resolution"] = 200.0
    first.save(out, format=fmt, **extra)
    return out.getvalue()


def png(lines: list[str]) -> bytes:
    return encode([page_image(lines)], "PNG")


def tiff(pages: list[list[str]]) -> bytes:
    return encode([page_image(p) for p in pages], "TIFF")


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF of page images only: no text layer, as a scanner makes them."""
    return encode([page_image(p) for p in pages], "PDF")


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages carry real text (Helvetica), written by hand so no library guesses."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
                            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        shown = b" T* ".join(b"(" + _escape(line) + b") Tj" for line in lines)
        stream = b"BT /F1 14 Tf 72 770 Td 18 TL " + shown + b" ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % len(objects))
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _escape(line: str) -> bytes:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


async def add_document(res: Resources, doc_id: str, data: bytes | None, *, org_id: str = "org-1",
                       text: str | None = None, document_type: str = "generic") -> None:
    """A documents row (PENDING) and, when `data` is given, its file in local storage."""
    key = f"{org_id}/{doc_id}"
    if data is not None:
        await LocalStorage(res.settings.storage.dir).put(key, data)
    await res.db.execute(
        "INSERT INTO documents (id, org_id, storage_key, document_type, ocr_text) VALUES ($1, $2, $3, $4, $5)",
        doc_id, org_id, key, document_type, text)
