"""The fields a vision model extracts per document type, as models that are also JSON schemas.

Each model is sent as a strict JSON schema (every field required, nullable when unknown, no
extra keys) and the reply is validated against the same model before it is stored. When nobody
named the document's type, the generic schema goes out with one more field, the type the model
sees, so one request both classifies the document and extracts its generic fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import PermanentError

DocumentType = Literal["invoice", "receipt", "form", "generic"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineItem(_Strict):
    description: str
    quantity: float | None
    unit_price: float | None
    amount: float | None


class Invoice(_Strict):
    invoice_number: str | None
    vendor_name: str | None
    customer_name: str | None
    issue_date: str | None
    """ISO 8601 (YYYY-MM-DD) when legible."""
    due_date: str | None
    currency: str | None
    subtotal: float | None
    tax: float | None
    total: float | None
    line_items: list[LineItem]


class Receipt(_Strict):
    merchant_name: str | None
    date: str | None
    currency: str | None
    total: float | None
    tax: float | None
    payment_method: str | None
    line_items: list[LineItem]


class FormField(_Strict):
    label: str
    value: str | None


class Form(_Strict):
    title: str | None
    fields: list[FormField]


class Generic(_Strict):
    title: str | None
    summary: str | None
    dates: list[str]
    amounts: list[float]
    people: list[str]
    organizations: list[str]


class Detected(Generic):
    document_type: DocumentType
    """Which of the known types the pages are ("generic" when none fits)."""


MODELS: dict[DocumentType, type[_Strict]] = {
    "invoice": Invoice, "receipt": Receipt, "form": Form, "generic": Generic,
}
DETECT_SCHEMA_NAME = "detect_generic"


def json_schema(document_type: DocumentType) -> dict[str, Any]:
    return MODELS[document_type].model_json_schema()


def instructions(document_type: str) -> str:
    return (f"You extract structured data from scanned {document_type} pages. Reply with JSON that "
            "fits the schema exactly. Use null for a value that is absent or illegible; never guess. "
            "Dates are ISO 8601 (YYYY-MM-DD); amounts are numbers without currency symbols.")


def detect_schema() -> dict[str, Any]:
    return Detected.model_json_schema()


def detect_instructions() -> str:
    return (instructions("document") + " First decide which document_type the pages are: an invoice "
            "(a bill to pay), a receipt (proof of a payment made), a form (labelled fields filled in), "
            "or generic for anything else.")


def validate(document_type: DocumentType, reply: str) -> dict[str, Any]:
    """The reply as plain data, or PermanentError saying where it breaks the schema."""
    return _validated(MODELS[document_type], document_type, reply)


def validate_detected(reply: str) -> tuple[DocumentType, dict[str, Any]]:
    """The type the model detected and the generic fields, or PermanentError as validate()."""
    fields = _validated(Detected, "generic", reply)
    detected: DocumentType = fields.pop("document_type")
    return detected, fields


def _validated(model: type[_Strict], name: str, reply: str) -> dict[str, Any]:
    try:
        parsed = model.model_validate_json(reply)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(reply)"
        raise PermanentError(f"the vision reply does not fit the {name} schema at {where}: "
                             f"{first['msg']}") from None
    return parsed.model_dump(mode="json")
