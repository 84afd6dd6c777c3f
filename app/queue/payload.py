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

import functools
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

    def json_bytes(self) -> bytes:
        """`to_json()` written as compact JSON, in one step. Straight from the model's serializer:
        `model_dump_json` would add a Python wrapper, a decode and our encode (~20 us cold, on
        every enqueue)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_defaults=True)


class Empty(Payload):
    """The payload of a job that takes no arguments."""


def parse(job: str, model: type[P], data: Any) -> P:
    """Validate `data` as `model`, or raise InvalidPayload naming every bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPayload(job, {"(payload)": f"expected a JSON object, got {type(data).__name__}"})
    check_limits(job, data)
    known = _known_names(model)
    unknown = [k for k in data if k not in known]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload.from_pydantic(job, exc.errors()) from None
    if unknown:
        log.warning("payload_fields_ignored", job=job, fields=sorted(str(k) for k in unknown)[:20])
    return parsed


@functools.cache
def _known_names(model: type[Payload]) -> frozenset[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
        if isinstance(field.validation_alias, str):
            names.add(field.validation_alias)
    return frozenset(names)


# The most bytes one character of a string takes in compact JSON without ASCII escaping: a
# control character becomes `\u00XX`; anything else is at most 4 bytes of UTF-8.
_MAX_BYTES_PER_CHAR = 6
# The longest repr of a float in JSON ("-1.7976931348623157e+308"), `false`, and a separator.
_MAX_FLOAT_BYTES = 24
_MAX_ATOM_BYTES = 5
_EXACT_INT_BITS = 128


def check_limits(job: str, data: Any) -> None:
    """Refuse a payload nested deeper than MAX_DEPTH, larger than MAX_PAYLOAD_BYTES as JSON, or
    holding a NUL character or a lone surrogate in a string (PostgreSQL cannot store either; no
    real field has one).

    Walked without recursion, so even a hostile structure cannot exhaust the stack. The walk
    adds up an upper bound of the JSON size; only a payload whose bound passes the limit (or
    that holds values JSON does not know) is serialized to be measured exactly, so the common
    small payload costs no second serialization."""
    bound = _walk(job, data)
    if bound is not None and bound <= MAX_PAYLOAD_BYTES:
        return
    try:
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(job, {"(payload)": f"not JSON-serializable: {exc}"}) from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(job, {"(payload)": f"{size} bytes of JSON; at most {MAX_PAYLOAD_BYTES} are accepted"})


def _walk(job: str, data: Any) -> int | None:
    """Check depth and text; return an upper bound of the JSON size, or None when only
    json.dumps can tell (a value or key JSON writes with str(), or refuses)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    bound: int | None = 0
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidPayload(job, {"(payload)": f"nested deeper than {MAX_DEPTH} levels"})
        size: int | None
        if isinstance(value, dict):
            size = 2
            for k, v in value.items():
                name = f"{path}.{k}" if path else str(k)
                if isinstance(k, str):
                    _check_text(job, name, k, is_name=True)
                    size += 4 + _MAX_BYTES_PER_CHAR * len(k)  # quotes, colon, comma
                else:  # json.dumps converts some keys and refuses others: let it say which
                    bound = None
                stack.append((v, name, depth + 1))
        elif isinstance(value, list | tuple):  # json.dumps writes a tuple as a list
            size = 2 + len(value)
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(value))
        else:
            size = _scalar_bound(job, path, value)
        bound = None if bound is None or size is None else bound + size
    return bound


def _check_text(job: str, path: str, text: str, *, is_name: bool = False) -> None:
    where = _printable(path or "(payload)")
    if "\x00" in text:
        raise InvalidPayload(job, {where: "field name contains a NUL character" if is_name
                                   else "contains a NUL character"})
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidPayload(job, {where: "field name is not valid Unicode (a lone surrogate)" if is_name
                                       else "not valid Unicode (a lone surrogate)"}) from None


def _printable(path: str) -> str:
    """A field path fit for an error message (and for PostgreSQL, should it be stored)."""
    return path.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def _scalar_bound(job: str, path: str, value: Any) -> int | None:
    """The most bytes `value` takes in compact JSON; None when unknown until written."""
    if isinstance(value, str):
        _check_text(job, path, value)
        return 2 + _MAX_BYTES_PER_CHAR * len(value)
    if value is None or isinstance(value, bool):
        return _MAX_ATOM_BYTES
    if isinstance(value, int):
        # Past Python's int-to-str digit limit json.dumps refuses the number: let it say so.
        if value.bit_length() > _EXACT_INT_BITS:
            return None
        return 2 + value.bit_length() * 31 // 100  # sign, and log10(2) digits per bit, rounded up
    if isinstance(value, float):
        return _MAX_FLOAT_BYTES
    return None  # written as str() by json.dumps


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
