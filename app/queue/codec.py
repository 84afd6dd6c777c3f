"""The JSON job serializer used by every enqueue and every Worker; never pickle.

arq pickles by default, which lets anyone who can write to Redis run code in the worker. This
codec writes JSON and refuses anything else, so a pickled payload fails to decode and ends in
the dead-letter queue instead of executing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

# Pickle protocol 2+ streams start with b"\x80"; JSON documents start with "{".
_PICKLE_MARK = 0x80


class NotJson(ValueError):
    """Bytes in Redis that are not a JSON object: refused, never unpickled."""


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, BaseException):
        # Results of failed jobs keep the error's class and text instead of a pickle.
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, uuid.UUID | decimal.Decimal | PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    if data[:1] and data[0] == _PICKLE_MARK:
        raise NotJson("payload is a pickle, not JSON; refusing to unpickle it")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotJson(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise NotJson("payload is not a JSON object")
    return value
