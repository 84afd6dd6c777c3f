"""The base of every job's payload model: frozen, strict about unknown fields, camelCase aware.

The web app sends camelCase (`documentId`); Python callers may use snake_case. Both validate;
payloads are dumped in camelCase so what sits in Redis is what the web app would have sent.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from app.errors import InvalidPayload

P = TypeVar("P", bound="Payload")


class Payload(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        str_strip_whitespace=True,
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


class Empty(Payload):
    """The payload of a job that takes no arguments."""


def parse(job: str, model: type[P], data: Any) -> P:
    """Validate `data` as `model`, or raise InvalidPayload naming every bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPayload(job, {"(payload)": f"expected a JSON object, got {type(data).__name__}"})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload.from_pydantic(job, exc.errors()) from None
