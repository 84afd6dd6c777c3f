"""OCR and vision extraction of an uploaded document, then its embedding job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.jobs._pending import not_built_yet
from app.payload import Payload
from app.registry import JobSpec


class ProcessDocument(Payload):
    document_id: str
    org_id: str
    document_type: Literal["invoice", "receipt", "form", "generic"] | None = None
    perform_ocr: bool = Field(True, alias="performOCR")
    perform_vision_extraction: bool = False
    language: str = Field("eng", pattern=r"^[a-z_]{3,8}(\+[a-z_]{3,8})*$")


SPEC = JobSpec(name="process_document", queue="document-processing", payload=ProcessDocument,
               run=not_built_yet, description="OCR / text layer, optional vision extraction, then embed")
