"""The base of every job's payload model, and the limits every payload is held to.

The web app sends camelCase (`documentId`); Python callers may use snake_case. Both validate;
payloads are dumped in camelCase so what sits in Redis is what the web app would have sent.
Fields the model does not know are dropped with a warning rather than refused: a web app
deploys new fields before the workers that read them (BullMQ and Sidekiq jobs behave the same).
Wrong types are still refused, naming the field.

Limits, checked before the model sees the data: a payload is at most MAX_PAYLOAD_BYTES of JSON
and nested at most MAX_DEPTH deep. Both are far above any real payload and far below what
would make json or pydantic recurse out of stack.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from app.errors import InvalidPayload

P = TypeVar("P", bound="Payload")

MAX_PAYLOAD_BYTES = 1_000_000
MAX_DEPTH = 32

log = structlog.get_logger(__name__)


class Payload(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
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
    check_limits(job, data)
    unknown = sorted(str(k) for k in data if k not in _known_names(model))
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload.from_pydantic(job, exc.errors()) from None
    if unknown:
        log.warning("payload_fields_ignored", job=job, fields=unknown[:20])
    return parsed


def _known_names(model: type[Payload]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias)
    return names


def check_limits(job: str, data: Any) -> None:
    """Refuse a payload nested deeper than MAX_DEPTH, larger than MAX_PAYLOAD_BYTES as JSON, or
    holding a NUL character in a string (PostgreSQL cannot store one; no real field has one).

    Walked without recursion, so even a hostile structure cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidPayload(job, {"(payload)": f"nested deeper than {MAX_DEPTH} levels"})
        if isinstance(value, dict):
            for k, v in value.items():
                name = f"{path}.{k}" if path else str(k)
                if "\x00" in name:
                    raise InvalidPayload(job, {name.replace("\x00", "\\x00"): "field name contains a NUL character"})
                stack.append((v, name, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise InvalidPayload(job, {path or "(payload)": "contains a NUL character"})
    try:
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(job, {"(payload)": f"not JSON-serializable: {exc}"}) from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(job, {"(payload)": f"{size} bytes of JSON; at most {MAX_PAYLOAD_BYTES} are accepted"})


def loads_limited(job: str, text: str) -> Any:
    """JSON text from a command line or an HTTP body, refused early when it is over the limits
    (the bracket scan runs before json.loads, which would recurse on deep input)."""
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(job, {"(payload)": f"more than {MAX_PAYLOAD_BYTES} bytes of JSON"})
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped = not escaped and ch == "\\"
            in_string = escaped or ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise InvalidPayload(job, {"(payload)": f"nested deeper than {MAX_DEPTH} levels"})
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(job, {"(payload)": f"not valid JSON: {exc}"}) from None
