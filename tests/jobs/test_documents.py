"""process_document through the real worker: files in storage become text (text layer or real
tesseract), optionally structured fields from a vision model, and an embedding job; bad files,
timeouts and vision failures end as they should."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from PIL import Image

from app.config import Settings
from app.documents import schemas
from app.errors import InvalidPayload
from app.jobs.resources import Resources
from app.queue import keys
from tests.fakes import documents as files
from tests.fakes.openai import FakeOpenAI, vision_json
from tests.support.documents import QUEUE, engine, process, row
from tests.support.jobs import outcome
from tests.support.records import arq_record
from tests.support.worker import in_process_worker

pytestmark = pytest.mark.usefixtures("tesseract")


async def test_images_are_ocrd_with_confidence_progress_and_an_embedding_job(
        settings: Settings, res: Resources) -> None:
    """A PNG and a two-page TIFF are read by tesseract: text, page count, mean word confidence,
    COMPLETED at progress 100, and an embedding job queued for the text."""
    await files.add_document(res, "png-1", files.png(["INVOICE 4711", "Total due 128.50 EUR"]))
    await files.add_document(res, "tif-1", files.tiff([["Page one says hello"], ["Page two says goodbye"]]))
    async with in_process_worker(settings, [QUEUE]) as worker:
        (ok_png, png_result), (ok_tif, tif_result) = await asyncio.gather(
            process(res, "png-1"), process(res, "tif-1", language="eng"))
        assert engine(worker).pages_ocrd == 3
    assert ok_png and ok_tif
    png_row, tif_row = await row(res, "png-1"), await row(res, "tif-1")
    assert "INVOICE 4711" in png_row["ocr_text"] and "128.50" in png_row["ocr_text"]
    assert tif_row["ocr_text"] == "Page one says hello\n\nPage two says goodbye"
    assert (png_row["status"], png_row["progress"], png_row["page_count"]) == ("COMPLETED", 100, 1)
    assert tif_row["page_count"] == 2 and tif_result["ocrPages"] == 2
    assert 0.8 < png_row["ocr_confidence"] <= 1  # the web app's scale, 0-1
    assert png_result["confidence"] == pytest.approx(png_row["ocr_confidence"])
    embed = res.enqueuer.job(png_result["embeddingJobId"], "document-embedding")
    async with asyncio.timeout(10):  # the outbox relay queues it once the document's commit is in
        while await embed.status() == "not_found":
            await asyncio.sleep(0.02)
    assert await embed.status() in ("queued", "in_progress", "complete")  # queued for the embedding worker


async def test_scanned_pdf_without_text_layer_is_rendered_and_ocrd(settings: Settings, res: Resources) -> None:
    """A PDF of page images has no text layer: each page is rendered and read by tesseract; the
    job's progress is readable while it runs and ends at 100."""
    await files.add_document(res, "scan-1", files.scanned_pdf([["Scanned contract clause seven"]]))
    async with in_process_worker(settings, [QUEUE]):
        queued = await res.enqueuer.enqueue("process_document", {"documentId": "scan-1", "orgId": "org-1"})
        assert queued is not None
        ok, result = await outcome(res, queued.job_id, QUEUE)
    assert ok, result
    progress = json.loads(await res.redis.get(keys.progress_key(queued.job_id)) or b"{}")
    assert progress == {"percent": 100, "step": "done"}  # what `workhorse jobs show` reads
    assert (result["fileType"], result["ocrPages"], result["textLayerPages"]) == ("pdf", 1, 0)
    assert (await row(res, "scan-1"))["ocr_text"] == "Scanned contract clause seven"


async def test_pdf_text_layer_is_read_directly_and_never_reaches_tesseract(
        settings: Settings, res: Resources) -> None:
    """Pages with a text layer are read by pdfium: the OCR engine sends no page to tesseract."""
    pdf = files.text_pdf([["Quarterly report (draft)", "Revenue grew"], ["Second page text"]])
    await files.add_document(res, "text-1", pdf)
    async with in_process_worker(settings, [QUEUE]) as worker:
        ok, result = await process(res, "text-1")
        assert engine(worker).pages_ocrd == 0
    assert ok, result
    assert (result["ocrPages"], result["textLayerPages"], result["confidence"]) == (0, 2, None)
    doc = await row(res, "text-1")
    assert doc["ocr_text"] == "Quarterly report (draft)\nRevenue grew\n\nSecond page text"
    assert doc["ocr_confidence"] is None and doc["page_count"] == 2


async def test_bad_files_fail_once_with_a_clear_reason(make_settings: Callable[..., Settings],
                                                       res: Resources) -> None:
    """Corrupt, unsupported, empty, oversized (a decompression bomb), too many pages, missing in
    storage, a language tesseract lacks, or no such document: FAILED with processingError,
    dead-lettered after one attempt."""
    settings = make_settings(ocr_max_pixels=4_000_000, ocr_max_pages=2)
    truncated = files.png(["This image is cut short"])[:400]
    await files.add_document(res, "corrupt", truncated)
    await files.add_document(res, "text-file", b"just some plain text, not an image")
    await files.add_document(res, "bomb", files.encode([Image.new("L", (3000, 3000), 255)], "PNG"))
    await files.add_document(res, "many-pages", files.tiff([["one"], ["two"], ["three"]]))
    await files.add_document(res, "no-file", None)
    await files.add_document(res, "empty", b"")
    expected = {"corrupt": "cannot be decoded", "text-file": "unsupported file type", "empty": "empty (0 bytes)",
                "bomb": "above OCR_MAX_PIXELS=4000000", "many-pages": "3 pages, above OCR_MAX_PAGES=2",
                "no-file": "not in storage"}
    await files.add_document(res, "german", files.png(["Guten Tag"]))
    expected["german"] = "tesseract failed on page 1 (language 'deu')"
    async with in_process_worker(settings, [QUEUE]):
        results = await asyncio.gather(*(process(res, doc_id, language="deu" if doc_id == "german" else "eng")
                                         for doc_id in [*expected, "no-such-doc"]))
    assert [ok for ok, _ in results] == [False] * 8
    for doc_id, reason in expected.items():
        doc = await row(res, doc_id)
        assert doc["status"] == "FAILED" and reason in doc["processing_error"], (doc_id, doc["processing_error"])
    letters = {d.payload["documentId"]: d for d in await res.dlq.list()}
    assert {d.attempts for d in letters.values()} == {1}
    assert letters["no-such-doc"].error_class == "NotFound"


async def test_a_document_whose_last_attempt_times_out_ends_failed(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """OCR that outlasts the queue's job timeout on its last attempt is cancelled, dead-lettered,
    and the document says FAILED instead of staying PROCESSING."""
    settings = make_settings(document_processing_timeout_s=0.3, document_processing_attempts=1)
    await files.add_document(res, "slow", files.tiff([["page one"], ["page two"]]))
    async with in_process_worker(settings, [QUEUE]):
        ok, _ = await process(res, "slow")
    doc = await row(res, "slow")
    assert not ok and doc["status"] == "FAILED"
    assert doc["processing_error"] == "the job ran past its timeout of 0.3 s and was cancelled"
    [letter] = await res.dlq.list()
    assert letter.error_class == "Timeout" and letter.attempts == 1


async def test_vision_extraction_stores_fields_that_fit_the_schema(
        make_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """The page images go to the vision model with the invoice schema; a reply that fits is stored,
    one that does not keeps the text, stores no fields and says why."""
    settings = make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url)
    invoice = {"invoice_number": "4711", "vendor_name": "ACME", "customer_name": None, "issue_date": "2026-01-31",
               "due_date": None, "currency": "EUR", "subtotal": 100.0, "tax": 28.5, "total": 128.5,
               "line_items": [{"description": "Anvil", "quantity": 1, "unit_price": 100.0, "amount": 100.0}]}
    await files.add_document(res, "inv-1", files.png(["INVOICE 4711", "Total 128.50"]))
    await files.add_document(res, "inv-2", files.png(["INVOICE 4712"]))
    async with in_process_worker(settings, [QUEUE]):
        fake_openai.vision_reply = vision_json(**invoice)
        ok, result = await process(res, "inv-1", documentType="invoice", performVisionExtraction=True)
        assert ok and result["structuredData"] == invoice and result["visionError"] is None
        assert (result["documentType"], result["documentTypeDetected"]) == ("invoice", False)
        fake_openai.vision_reply = vision_json(invoice_number=4712)
        ok, result = await process(res, "inv-2", documentType="invoice", performVisionExtraction=True)
    assert ok and result["structuredData"] is None
    assert "does not fit the invoice schema" in result["visionError"]
    assert (await row(res, "inv-1"))["structured_data"] == invoice
    second = await row(res, "inv-2")
    assert (second["status"], second["structured_data"], second["document_type"]) == ("COMPLETED", None, "invoice")
    [request, _] = fake_openai.bodies("/v1/chat/completions")
    assert request["response_format"]["json_schema"]["name"] == "invoice"
    parts = request["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


RECEIPT = {"merchant_name": "ACME", "date": "2026-02-01", "currency": "EUR", "total": 9.9, "tax": None,
           "payment_method": "card", "line_items": []}


async def test_a_vision_5xx_is_retried_from_the_saved_text_without_running_tesseract_again(
        make_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """The vision model answers 500 twice: the queue's 3 attempts (the runbook's) carry the job to
    success, each retry resuming from the text the first attempt saved, so tesseract reads the page
    once. Three 503s in a row use up the attempts: FAILED after 3, its text kept, one OCR too."""
    settings = make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url,
                             document_processing_base_delay_s=0.05, poll_fallback_ms=50)
    assert settings.queues.queue(QUEUE).retry.attempts == 3  # config/queues.toml, not overridden here
    await files.add_document(res, "flaky", files.png(["RECEIPT 17", "Paid 9.90 EUR"]))
    await files.add_document(res, "down", files.png(["RECEIPT 18"]))
    fake_openai.vision_reply = vision_json(**RECEIPT)
    async with in_process_worker(settings, [QUEUE]) as worker:
        fake_openai.fail_next(2, 500)
        ok, result = await process(res, "flaky", documentType="receipt", performVisionExtraction=True)
        assert (ok, engine(worker).pages_ocrd, fake_openai.count("/v1/chat/completions")) == (True, 1, 3), result
        fake_openai.fail_next(3, 503)
        failed, _ = await process(res, "down", documentType="receipt", performVisionExtraction=True)
        assert (failed, engine(worker).pages_ocrd, fake_openai.count("/v1/chat/completions")) == (False, 2, 6)
    assert result["structuredData"] == RECEIPT and "RECEIPT 17" in (await row(res, "flaky"))["ocr_text"]
    assert result["ocrPages"] == 1 and 0.8 < result["confidence"] <= 1 and result["fileType"] == "png"
    down = await row(res, "down")
    assert down["status"] == "FAILED" and "503" in down["processing_error"] and down["ocr_text"] == "RECEIPT 18"
    [letter] = await res.dlq.list()
    assert (letter.payload["documentId"], letter.attempts, letter.error_class) == ("down", 3, "TransientError")


async def test_vision_detects_the_type_nobody_gave_and_stores_it(
        make_settings: Callable[..., Settings], res: Resources, fake_openai: FakeOpenAI) -> None:
    """Neither the payload nor the row names a type: the generic schema goes out with a
    document_type field; the model's answer becomes the row's type and the result's, and the
    generic fields are stored without it."""
    settings = make_settings(openai_api_key="sk-test", openai_base_url=fake_openai.base_url)
    generic = {"title": "Receipt", "summary": None, "dates": ["2026-02-01"], "amounts": [9.9], "people": [],
               "organizations": ["ACME"]}
    await files.add_document(res, "what-is-it", files.png(["ACME", "Paid 9.90"]))
    fake_openai.vision_reply = vision_json(document_type="receipt", **generic)
    async with in_process_worker(settings, [QUEUE]):
        ok, result = await process(res, "what-is-it", performVisionExtraction=True)
    assert ok, result
    assert (result["documentType"], result["documentTypeDetected"], result["structuredData"]) == (
        "receipt", True, generic)
    stored = await row(res, "what-is-it")
    assert (stored["document_type"], stored["structured_data"]) == ("receipt", generic)
    [request] = fake_openai.bodies("/v1/chat/completions")
    sent = request["response_format"]["json_schema"]
    assert sent["name"] == schemas.DETECT_SCHEMA_NAME and "document_type" in sent["schema"]["required"]


async def test_an_id_holding_nul_is_an_invalid_payload_not_a_database_error(
        settings: Settings, res: Resources) -> None:
    """PostgreSQL refuses NUL in text: the enqueuer refuses such an id by name, and one written
    straight into Redis (as the web app does) is dead-lettered as an invalid payload."""
    with pytest.raises(InvalidPayload, match="documentId"):
        await res.enqueuer.enqueue("process_document", {"documentId": "doc\x00-1", "orgId": "org-1"})
    raw = arq_record("process_document", {"documentId": "doc\x00-1", "orgId": "org-1"})
    await res.redis.psetex(keys.JOB_PREFIX + "nul-id", 60_000, raw)
    await res.redis.zadd(QUEUE, {"nul-id": 1})
    async with in_process_worker(settings, [QUEUE]):
        ok, _ = await outcome(res, "nul-id", QUEUE)
    [letter] = await res.dlq.list()
    assert not ok and letter.error_class == "InvalidPayload" and "documentId" in letter.error_message
