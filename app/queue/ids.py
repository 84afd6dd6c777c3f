"""Job ids: random UUID4s in hex, as `uuid.uuid4().hex` writes them, made a few hundred at a time
from one read of os.urandom. Same randomness as uuid4 (which reads os.urandom too); an enqueue
only takes the next one off a list, instead of a system call and a UUID object each (cold, on
the enqueue path, that was ~30 us). A forked child starts a new batch, so parent and child never
share ids."""

from __future__ import annotations

import os
from collections.abc import Iterator

_IDS_PER_BATCH = 256
_BYTES = 16


def _batch() -> Iterator[str]:
    raw = bytearray(os.urandom(_IDS_PER_BATCH * _BYTES))
    raw[6::_BYTES] = bytes((b & 0x0F) | 0x40 for b in raw[6::_BYTES])  # version 4
    raw[8::_BYTES] = bytes((b & 0x3F) | 0x80 for b in raw[8::_BYTES])  # RFC 4122 variant
    text = raw.hex()
    step = _BYTES * 2
    return iter([text[i:i + step] for i in range(0, len(text), step)])


_ids: Iterator[str] = iter(())


def _forget() -> None:
    """A forked child must not hand out the ids its parent will (fork copies the batch)."""
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_forget)


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex digits of a random UUID4."""
    global _ids
    # Taking from a list iterator is atomic under the GIL: threads never get the same id. Two
    # threads finding the batch empty at once each make one, which costs only randomness.
    for job_id in _ids:
        return job_id
    batch = _batch()
    job_id = next(batch)  # ours, before other threads can see the batch
    _ids = batch
    return job_id
