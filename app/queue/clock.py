"""The engine's clock: Unix time in whole milliseconds, as arq's records and queue scores hold it."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in Unix milliseconds (rounded, as arq's `timestamp_ms`)."""
    return round(time.time() * 1000)
