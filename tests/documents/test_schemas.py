"""The extraction schemas sent to the vision model (app/documents/schemas.py) qualify for
structured outputs' strict mode."""

from __future__ import annotations

import pytest

from app.documents import schemas


@pytest.mark.parametrize("document_type", [*schemas.MODELS, None])
def test_every_extraction_schema_is_strict(document_type: schemas.DocumentType | None) -> None:
    """The schemas sent with `strict: true` qualify, the type-detecting one (None) included:
    every property required, no extra keys."""
    schema = schemas.json_schema(document_type) if document_type else schemas.detect_schema()
    for part in [schema, *schema.get("$defs", {}).values()]:
        assert part["additionalProperties"] is False
        assert set(part["required"]) == set(part["properties"])
