"""Redis replies as the engine's clients return them: bytes. redis-py types a reply `bytes | str`
(str with `decode_responses`, which the engine never sets); these narrow it at the one place a
reply is read, instead of a cast at every call."""

from __future__ import annotations

from typing import Any


def text(reply: bytes | str) -> str:
    """A reply holding UTF-8 text (a job id, a queue name, a JSON document)."""
    return reply.decode() if isinstance(reply, bytes) else reply


def octets(reply: bytes | str) -> bytes:
    """A reply holding bytes (a record, a result)."""
    return reply if isinstance(reply, bytes) else reply.encode()


def scored(reply: Any) -> list[tuple[str, float]]:
    """A `WITHSCORES` reply (redis-py pairs each member with its score; its types say less)."""
    return [(text(member), float(score)) for member, score in reply]
