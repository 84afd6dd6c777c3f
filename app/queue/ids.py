"""Job ids: random UUID4s in hex, as `uuid.uuid4().hex` writes them, drawn from a buffer of
os.urandom bytes refilled a few hundred ids at a time. Same randomness as uuid4 (which reads
os.urandom too), without a system call and a UUID object per enqueue. A forked child starts
with an empty buffer, so parent and child never share ids."""

from __future__ import annotations

import os
import threading

_IDS_PER_REFILL = 256
_BYTES = 16


class _IdSource:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # enqueuers may run in several threads
        self._buffer = b""
        self._at = 0

    def forget(self) -> None:
        """A forked child must not hand out the ids its parent will (fork copies the buffer)."""
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0

    def new(self) -> str:
        with self._lock:
            if self._at >= len(self._buffer):
                self._buffer, self._at = os.urandom(_IDS_PER_REFILL * _BYTES), 0
            raw = bytearray(self._buffer[self._at:self._at + _BYTES])
            self._at += _BYTES
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return raw.hex()


_source = _IdSource()
os.register_at_fork(after_in_child=_source.forget)


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex digits of a random UUID4."""
    return _source.new()
