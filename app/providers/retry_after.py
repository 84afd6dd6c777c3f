"""The one Retry-After parser: `retry-after-ms`, seconds (decimals too) or an HTTP date.

OpenAI, webhooks, Twilio and Google all answer 429 (or 503) with one of these forms; a provider
module passes its response headers here and puts the result on RateLimited.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

# A server asking for more than a day is wrong or hostile; the retry policy still caps nothing
# below MIN_RATE_LIMIT_DELAY_S, so clamp to a value a job can wait without expiring.
MAX_RETRY_AFTER_S = 86_400.0


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to the headers (case-insensitive mapping), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = _number(lowered.get("retry-after-ms"))
    if ms is not None:
        return _clamp(ms / 1000)
    return parse(lowered.get("retry-after"), now=now)


def parse(value: str | None, *, now: float | None = None) -> float | None:
    """One Retry-After value: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return _clamp(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return _clamp(when.timestamp() - (time.time() if now is None else now))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _clamp(seconds: float) -> float:
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
